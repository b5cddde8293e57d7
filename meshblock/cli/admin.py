"""The admin commands: `meshblock volume ...`, `meshblock node ...`, `meshblock cluster ...`.

They speak the controller's admin API (VolumeService, NodeService,
ClusterService).  Every command takes ``-o table|json`` and the connection
options ``--endpoint``, ``--ca``, ``--cert`` and ``--key``.
"""

from __future__ import annotations

import functools
import json
import re
import sys
import time
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Callable, Iterator

import click
from rich.console import Group
from rich.progress_bar import ProgressBar
from rich.table import Table
from rich.text import Text

from ..proto.meshblock.v1 import admin_pb2 as pb
from . import output as out
from .client import AdminClient, Connection

VOLUME_STATES = ("creating", "available", "degraded", "faulted", "deleting")
READY_STATES = ("available", "degraded")


# -- parameter types ---------------------------------------------------------------------------------------

from .types import Size, parse_labels, qos_given, qos_options  # noqa: E402


class Duration(click.ParamType):
    """A duration: 120s, 2m, 1h, 500ms, or plain seconds."""

    name = "duration"
    _RE = re.compile(r"^\s*(\d+(?:\.\d+)?)\s*(ms|s|m|h)?\s*$")
    _SCALE = {"ms": 0.001, "s": 1.0, "m": 60.0, "h": 3600.0, None: 1.0}

    def convert(self, value, param, ctx):  # type: ignore[override]
        if isinstance(value, (int, float)):
            return float(value)
        m = self._RE.match(str(value))
        if not m:
            self.fail(f"{value!r} is not a duration (examples: 120s, 2m, 1h)", param, ctx)
        return float(m.group(1)) * self._SCALE[m.group(2)]


SIZE = Size()
DURATION = Duration()





# -- options every command takes -----------------------------------------------------------------------------

@dataclass(frozen=True)
class Invocation:
    """What every admin command is given: the output format and how to reach the controller."""

    output: str
    conn: Connection

    @property
    def json(self) -> bool:
        return self.output == "json"

    def client(self) -> AdminClient:
        return AdminClient(self.conn)

    def report(self, message, text: str) -> None:
        """Print a reply: the whole message as JSON for scripts, one line for people."""
        if self.json:
            out.print_json(out.message_to_dict(message))
        else:
            click.echo(text)


_PEM = click.Path(dir_okay=False, path_type=Path)
_COMMON_OPTIONS = (
    click.option("-o", "--output", type=click.Choice(["table", "json"]), default="table", show_default=True,
                 help="Tables for people; JSON for scripts (sizes in bytes)."),
    click.option("--endpoint", metavar="ENDPOINT", default=None,
                 help="The controller: unix:/path or host:port (TLS).  Default: $MESHBLOCK_ENDPOINT, "
                      "else unix:$MESHBLOCK_HOME/controller.sock."),
    click.option("--ca", type=_PEM, envvar="MESHBLOCK_CA", default=None, show_envvar=True,
                 help="CA certificate (PEM) to verify a host:port controller."),
    click.option("--cert", type=_PEM, envvar="MESHBLOCK_CERT", default=None, show_envvar=True,
                 help="Client certificate (PEM) for a host:port controller."),
    click.option("--key", type=_PEM, envvar="MESHBLOCK_KEY", default=None, show_envvar=True,
                 help="Client private key (PEM) for a host:port controller."),
    click.option("--token", envvar="MESHBLOCK_TOKEN", default=None, show_envvar=True, show_default=False,
                 help="Bearer token of your identity (docs/security.md)."),
)


def admin_options(fn: Callable[..., Any]) -> Callable[..., Any]:
    """Add the common options; the command receives an :class:`Invocation` first."""

    @functools.wraps(fn)
    def wrapper(*args: Any, output: str, endpoint: str | None, ca: Path | None, cert: Path | None,
                key: Path | None, token: str | None, **kwargs: Any) -> Any:
        inv = Invocation(output=output, conn=Connection(endpoint=endpoint, ca=ca, cert=cert, key=key, token=token))
        return fn(inv, *args, **kwargs)

    for option in reversed(_COMMON_OPTIONS):
        wrapper = option(wrapper)
    return wrapper


def timeout_option(default_timeout: str | None) -> Callable[[Callable[..., Any]], Callable[..., Any]]:
    limit = "" if default_timeout else " (default: no limit)"
    return click.option("--timeout", type=DURATION, default=default_timeout,
                        show_default=default_timeout is not None, help=f"How long to wait{limit}.")


def _interactive() -> bool:
    return sys.stdin.isatty()


def paginate(call: Callable[[Any], Any], request: Any, field: str) -> Iterator[Any]:
    """Every item of a paginated List call, following next_page_token."""
    seen: set[str] = set()
    while True:
        reply = call(request)
        yield from getattr(reply, field)
        token = reply.next_page_token
        if not token:
            return
        if token in seen:
            raise click.ClickException("the controller returned the same page token twice; listing stopped")
        seen.add(token)
        request.page_token = token


def _stopped_waiting(what: str, hint: str) -> click.exceptions.Exit:
    click.echo(f"stopped waiting; {what} goes on in the controller ({hint})", err=True)
    return click.exceptions.Exit(130)


# -- volumes: rendering -------------------------------------------------------------------------------------

def _online(v: pb.Volume) -> int:
    return sum(1 for r in v.replica_status if r.state == "online")


def _healthy(v: pb.Volume) -> bool:
    return v.state == "available" and all(r.state == "online" for r in v.replica_status)


def _rebuild_cell(r: pb.ReplicaStatus) -> Any:
    if r.state != "rebuilding":
        return "-"
    p = min(max(r.rebuild_progress, 0.0), 1.0)
    g = Table.grid(padding=(0, 1))
    eta = f"ETA {out.duration(r.rebuild_eta_seconds)}" if r.rebuild_eta_seconds else "ETA -"
    g.add_row(ProgressBar(total=1.0, completed=p, width=24), f"{p:.0%}", eta)
    return g


def _replicas_table(v: pb.Volume) -> Table:
    if v.HasField("erasure"):
        t = out.table("SHARD", "NODE", "ID", "STATE", "REBUILD")
        for r in sorted(v.replica_status, key=lambda r: r.shard):
            kind = "data" if r.shard < v.erasure.data else "parity"
            t.add_row(f"{r.shard} ({kind})", out.esc(r.node_name or r.node_id or "-"), out.esc(r.replica_id or "-"),
                      out.state(r.state), _rebuild_cell(r))
        return t
    t = out.table("NODE", "REPLICA", "STATE", "REBUILD")
    for r in v.replica_status:
        t.add_row(out.esc(r.node_name or r.node_id or "-"), out.esc(r.replica_id or "-"), out.state(r.state),
                  _rebuild_cell(r))
    return t


def _layout(v: pb.Volume) -> str:
    if v.HasField("erasure"):
        k, m = v.erasure.data, v.erasure.parity
        return (f"erasure-coded {k}+{m}: {k} data + {m} parity shard{'s' if m > 1 else ''}, survives {m} "
                f"node loss{'es' if m > 1 else ''}, uses {(k + m) / k:.2f}x its size")
    return f"{v.replicas} replica{'s' if v.replicas != 1 else ''}, uses {v.replicas}x its size"


def _replica_summary(v: pb.Volume) -> str:
    if not v.replica_status:
        text = f"{v.replicas} asked"
    else:
        text = f"{_online(v)} of {v.replicas} online"
        rebuilding = sum(1 for r in v.replica_status if r.state == "rebuilding")
        if rebuilding:
            text += f", {rebuilding} rebuilding"
    if v.spread:
        text += f" (spread across {out.esc(v.spread)})"
    return text


def _export_rows(v: pb.Volume) -> list[tuple[str, Any]]:
    if v.protocol == "iscsi":
        return [("Target IQN", out.esc(v.target_iqn or "-")), ("LUN", "0"),
                ("Networks", out.esc(", ".join(v.iscsi_netmasks) or "ANY")),
                ("CHAP", f"user {out.esc(v.chap_user)}" if v.chap_user else "off")]
    return [("NQN", out.esc(v.nqn or "-")), ("Namespace", out.esc(v.namespace_uuid or "-")),
            ("TLS", "on (a pre-shared key per host)" if v.tls else "off")]


def volume_view(v: pb.Volume) -> Group:
    nodes = {r.node_id: r.node_name for r in v.replica_status if r.node_id}
    head = nodes.get(v.head_node_id) or v.head_node_id
    source = "-"
    if v.source_snapshot_id:
        source = f"snapshot {v.source_snapshot_id}"
    elif v.source_volume_id:
        source = f"volume {v.source_volume_id}"
    rows: list[tuple[str, Any]] = [
        ("Volume", f"[bold]{out.esc(v.name)}[/bold]"),
        ("ID", out.esc(v.id or "-")),
        ("State", out.state(v.state)),
        ("Stage", out.esc(v.stage or "-")),
        ("Size", f"{out.size(v.size_bytes)} ({v.size_bytes} bytes)"),
        ("Layout", _layout(v)),
        ("Shards" if v.HasField("erasure") else "Replicas", _replica_summary(v)),
        ("Labels", out.labels(v.labels)),
        ("Protocol", "iSCSI" if v.protocol == "iscsi" else "NVMe/TCP"),
        ("QoS", out.qos(v.qos)),
        *_export_rows(v),
        ("Head node", out.esc(head or "-")),
        ("Initiators" if v.protocol == "iscsi" else "Hosts",
         "\n".join(out.esc(h) + (" (read-only)" if h in v.read_only_hosts else "")
                   + {"dhchap": " (DH-HMAC-CHAP)", "dhchap-bidirectional": " (bidirectional DH-HMAC-CHAP)"}.get(
                       v.host_auth.get(h, ""), "") for h in v.hosts)
         or "- (no host may connect yet)"),
        ("Source", out.esc(source)),
        ("Created", f"{out.timestamp(v.created_at)} ({out.age(v.created_at)} ago)" if v.created_at else "-"),
    ]
    if v.message:
        rows.append(("Message", out.esc(v.message)))
    parts: list[Any] = [out.properties(rows)]
    if v.replica_status:
        parts.append(_replicas_table(v))
    return Group(*parts)


def volumes_table(volumes: list[pb.Volume]) -> Table:
    t = out.table("NAME", "STATE", "SIZE", "REPLICAS", "PROTOCOL", "STAGE", "HOSTS", "LABELS", "AGE")
    for v in volumes:
        replicas = f"{_online(v)}/{v.replicas}" if v.replica_status else str(v.replicas)
        if v.HasField("erasure"):
            replicas += f" (ec {v.erasure.data}+{v.erasure.parity})"
        t.add_row(out.esc(v.name), out.state(v.state), out.size(v.size_bytes), replicas, v.protocol or "nvmf",
                  out.esc(v.stage or "-"), str(len(v.hosts)), out.labels(v.labels), out.age(v.created_at))
    return t


def show_volume(inv: Invocation, v: pb.Volume) -> None:
    if inv.json:
        out.print_json(out.message_to_dict(v))
    else:
        out.console().print(volume_view(v))


def _volume_progress(v: pb.Volume) -> str:
    text = v.state or "?"
    if v.stage:
        text += f" ({v.stage})"
    rebuilding = [r for r in v.replica_status if r.state == "rebuilding"]
    if rebuilding:
        avg = sum(r.rebuild_progress for r in rebuilding) / len(rebuilding)
        text += f", rebuilding {avg:.0%}"
    return text


def wait_for_volume(c: AdminClient, v: pb.Volume, timeout: float, verb: str) -> pb.Volume:
    """Poll until the volume is available or degraded; faulted, deleting or the timeout are errors."""
    deadline = time.monotonic() + timeout
    delay = 0.1
    name = v.name
    spinner = out.console(stderr=True)
    try:
        with spinner.status(f"{verb} volume {out.esc(name)}: {_volume_progress(v)}") as status:
            while True:
                if v.state in READY_STATES:
                    return v
                if v.state == "faulted":
                    raise click.ClickException(
                        f"volume {name} is faulted" + (f": {v.message}" if v.message else "")
                        + f" (see `meshblock volume get {name}`)")
                if v.state == "deleting":
                    raise click.ClickException(f"volume {name} is being deleted")
                remaining = deadline - time.monotonic()
                if remaining <= 0:
                    raise click.ClickException(
                        f"timed out after {out.duration(timeout)} waiting for volume {name} to become "
                        f"available (it is {_volume_progress(v)}); follow it with "
                        f"`meshblock volume get {name} --watch`")
                time.sleep(min(delay, remaining))
                delay = min(delay * 1.5, 1.0)
                v = c.volumes.GetVolume(pb.GetVolumeRequest(ref=v.id or name))
                status.update(f"{verb} volume {out.esc(name)}: {_volume_progress(v)}")
    except KeyboardInterrupt:
        raise _stopped_waiting(f"{verb} volume {name}", f"see `meshblock volume get {name}`") from None


# -- volume commands ----------------------------------------------------------------------------------------

_PROTOCOL_OPTIONS = (
    click.option("--protocol", type=click.Choice(["nvmf", "iscsi"], case_sensitive=False), default="nvmf",
                 show_default=True, help="How hosts reach the volume: NVMe/TCP, or iSCSI (LUN 0 of a target)."),
    click.option("--iscsi-network", "iscsi_networks", multiple=True, metavar="CIDR",
                 help="iSCSI: a network initiators may connect from (repeatable; default any)."),
    click.option("--chap-user", default="", metavar="USER", help="iSCSI: require CHAP logins as USER."),
    click.option("--chap-secret", default="", metavar="SECRET", envvar="MESHBLOCK_CHAP_SECRET", show_envvar=True,
                 help="iSCSI: the CHAP secret (12-255 characters); the variable keeps it off the process list."),
)


def protocol_options(fn: Callable[..., Any]) -> Callable[..., Any]:
    for option in reversed(_PROTOCOL_OPTIONS):
        fn = option(fn)
    return fn


def iscsi_request(protocol: str, networks: tuple[str, ...], chap_user: str, chap_secret: str) -> pb.IscsiOptions | None:
    protocol = protocol.lower()
    if protocol != "iscsi":
        if networks or chap_user or chap_secret:
            raise click.UsageError("--iscsi-network, --chap-user and --chap-secret need --protocol iscsi")
        return None
    if bool(chap_user) != bool(chap_secret):
        raise click.UsageError("CHAP needs both --chap-user and --chap-secret (or MESHBLOCK_CHAP_SECRET)")
    return pb.IscsiOptions(netmasks=list(networks), chap_user=chap_user, chap_secret=chap_secret)

@click.group()
def volume() -> None:
    """Create, inspect, publish and delete volumes."""


@volume.command("create")
@click.argument("name")
@click.option("--size", type=SIZE, required=True, help="Size with units: 10GiB, 512MiB, ...")
@click.option("--replicas", type=click.IntRange(1, 5), default=1, show_default=True,
              help="Copies of the data.")
@click.option("--ec", "ec", default=None, metavar="K+M",
              help="Erasure-code the volume instead of replicating it: K data + M parity shards on K+M "
                   "nodes (2+1 or 4+1); it survives M node losses at (K+M)/K of its size.")
@click.option("--spread", default="", metavar="LABEL",
              help="A node label (zone, rack, ...) no two replicas (or shards) may share; default: distinct nodes.")
@click.option("--label", "labels", multiple=True, metavar="KEY=VALUE", callback=parse_labels,
              help="A label on the volume (repeatable).")
@protocol_options
@click.option("--tls", is_flag=True,
              help="NVMe/TCP: hosts connect over TLS 1.3 only, each with its own pre-shared key (made when it is "
                   "published; `volume connect` gives it).")
@qos_options
@click.option("--wait/--no-wait", default=True, show_default=True,
              help="Wait until the volume is available (or degraded).")
@timeout_option("120s")
@admin_options
def volume_create(inv: Invocation, name: str, size: int, replicas: int, ec: str | None, spread: str,
                  labels: dict[str, str], protocol: str, iscsi_networks: tuple[str, ...], chap_user: str,
                  chap_secret: str, tls: bool, wait: bool, timeout: float, **limits: int | None) -> None:
    """Create volume NAME, exported over NVMe/TCP (default) or iSCSI."""
    if size <= 0:
        raise click.BadParameter("must be more than 0 bytes", param_hint="--size")
    limits_pb = pb.QosLimits(**qos_given(**limits))
    iscsi = iscsi_request(protocol, iscsi_networks, chap_user, chap_secret)
    erasure = None
    if ec is not None:
        if click.get_current_context().get_parameter_source("replicas") != click.core.ParameterSource.DEFAULT:
            raise click.BadParameter("an erasure-coded volume has K+M shards instead of replicas; give one "
                                     "of --ec and --replicas", param_hint="--replicas")
        k, sep, m = ec.partition("+")
        if not sep or not k.isdigit() or not m.isdigit():
            raise click.BadParameter(f"{ec!r} is not K+M, e.g. 2+1", param_hint="--ec")
        erasure, replicas = pb.ErasureCoding(data=int(k), parity=int(m)), 0
    with inv.client() as c:
        v = c.volumes.CreateVolume(pb.CreateVolumeRequest(name=name, size_bytes=size, replicas=replicas,
                                                          spread=spread, labels=labels, protocol=protocol,
                                                          iscsi=iscsi, erasure=erasure, qos=limits_pb, tls=tls))
        if wait:
            v = wait_for_volume(c, v, timeout, "creating")
    show_volume(inv, v)


@volume.command("list")
@click.option("--label", "labels", multiple=True, metavar="KEY=VALUE", callback=parse_labels,
              help="Only volumes with this label (repeatable: all must match).")
@click.option("--state", type=click.Choice(VOLUME_STATES, case_sensitive=False), default=None,
              help="Only volumes in this state.")
@click.option("--node", default=None, metavar="NODE", help="Only volumes with a replica on this node.")
@admin_options
def volume_list(inv: Invocation, labels: dict[str, str], state: str | None, node: str | None) -> None:
    """List volumes."""
    with inv.client() as c:
        node_id = ""
        if node:
            node_id = c.nodes.GetNode(pb.GetNodeRequest(ref=node)).id or node
        req = pb.ListVolumesRequest(label_selector=labels, state=(state or "").lower(), node_id=node_id)
        volumes = list(paginate(c.volumes.ListVolumes, req, "volumes"))
    if inv.json:
        out.print_json([out.message_to_dict(v) for v in volumes])
    elif not volumes:
        click.echo("No volumes.")
    else:
        out.console().print(volumes_table(volumes))


@volume.command("get")
@click.argument("name")
@click.option("--watch", "-w", is_flag=True,
              help="Refresh until the volume is healthy (or Ctrl-C), showing rebuild progress.")
@click.option("--interval", type=DURATION, default="1s", show_default=True,
              help="Refresh interval of --watch.")
@admin_options
def volume_get(inv: Invocation, name: str, watch: bool, interval: float) -> None:
    """Show volume NAME in detail: state, replicas, hosts, rebuilds."""
    interval = max(interval, 0.01)
    with inv.client() as c:
        def get() -> pb.Volume:
            return c.volumes.GetVolume(pb.GetVolumeRequest(ref=name))

        v = get()
        if not watch:
            show_volume(inv, v)
            return
        try:
            if inv.json:
                while True:
                    click.echo(json.dumps(out.message_to_dict(v)))
                    if _healthy(v):
                        return
                    time.sleep(interval)
                    v = get()
            from rich.live import Live

            def frame(v: pb.Volume) -> Group:
                footer = ("[green]healthy[/green]" if _healthy(v)
                          else f"[dim]refreshing every {out.duration(interval)}; Ctrl-C to stop[/dim]")
                return Group(volume_view(v), Text.from_markup(footer))

            with Live(frame(v), console=out.console(), auto_refresh=False) as live:
                while not _healthy(v):
                    time.sleep(interval)
                    v = get()
                    live.update(frame(v), refresh=True)
        except KeyboardInterrupt:
            return


@volume.command("delete")
@click.argument("name")
@click.option("--yes", "-y", is_flag=True, help="Do not ask for confirmation.")
@admin_options
def volume_delete(inv: Invocation, name: str, yes: bool) -> None:
    """Delete volume NAME and its data."""
    if not yes:
        if not _interactive():
            raise click.UsageError(f"deleting volume {name} destroys its data; there is no terminal to ask, "
                                   f"so pass --yes")
        click.confirm(f"Delete volume {name} and all its data?", abort=True, err=True)
    with inv.client() as c:
        reply = c.volumes.DeleteVolume(pb.DeleteVolumeRequest(ref=name))
    if inv.json:
        out.print_json({"name": name, "existed": reply.existed})
    elif reply.existed:
        click.echo(f"volume {name} deleted")
    else:
        click.echo(f"volume {name} did not exist; nothing to delete")


@volume.command("resize")
@click.argument("name")
@click.option("--size", type=SIZE, required=True, help="The new size (volumes only grow): 20GiB, ...")
@admin_options
def volume_resize(inv: Invocation, name: str, size: int) -> None:
    """Grow volume NAME to --size."""
    with inv.client() as c:
        v = c.volumes.ResizeVolume(pb.ResizeVolumeRequest(ref=name, size_bytes=size))
    inv.report(v, f"volume {v.name or name} is now {out.size(v.size_bytes)} ({v.size_bytes} bytes)")


@volume.command("set-replicas")
@click.argument("name")
@click.argument("replicas", type=click.IntRange(2, 5))
@admin_options
def volume_set_replicas(inv: Invocation, name: str, replicas: int) -> None:
    """Keep REPLICAS copies of replicated volume NAME (online; new copies are rebuilt first)."""
    with inv.client() as c:
        v = c.volumes.SetReplicas(pb.SetReplicasRequest(ref=name, replicas=replicas))
    inv.report(v, f"volume {v.name or name} now keeps {v.replicas} replicas; "
                  f"`meshblock volume get {v.name or name} --watch` follows the rebuild")


@volume.command("clone")
@click.argument("name")
@click.option("--from-snapshot", "snapshot", metavar="SNAPSHOT", default=None, help="Clone this snapshot.")
@click.option("--from-volume", "source", metavar="VOLUME", default=None, help="Clone this volume.")
@click.option("--size", type=SIZE, default=None,
              help="Size of the clone (default: the source's; may be larger).")
@click.option("--label", "labels", multiple=True, metavar="KEY=VALUE", callback=parse_labels,
              help="A label on the new volume (repeatable).")
@click.option("--replicas", type=click.IntRange(1, 5), default=1, show_default=True,
              help="Replicas of the clone; the others are rebuilt from the first, on the snapshot's node.")
@protocol_options
@qos_options
@click.option("--wait/--no-wait", default=True, show_default=True,
              help="Wait until the new volume is available (or degraded).")
@timeout_option("120s")
@admin_options
def volume_clone(inv: Invocation, name: str, snapshot: str | None, source: str | None, size: int | None,
                 labels: dict[str, str], replicas: int, protocol: str, iscsi_networks: tuple[str, ...],
                 chap_user: str, chap_secret: str, wait: bool, timeout: float, **limits: int | None) -> None:
    """Create volume NAME from a snapshot or from another volume."""
    if bool(snapshot) == bool(source):
        raise click.UsageError("give exactly one of --from-snapshot and --from-volume")
    iscsi = iscsi_request(protocol, iscsi_networks, chap_user, chap_secret)
    with inv.client() as c:
        v = c.volumes.CloneVolume(pb.CloneVolumeRequest(name=name, source_snapshot_ref=snapshot or "",
                                                        source_volume_ref=source or "", size_bytes=size or 0,
                                                        labels=labels, replicas=replicas, protocol=protocol,
                                                        iscsi=iscsi, qos=pb.QosLimits(**qos_given(**limits))))
        if wait:
            v = wait_for_volume(c, v, timeout, "cloning")
    show_volume(inv, v)


# -- snapshots ----------------------------------------------------------------------------------------------

@volume.group("snapshot")
def snapshot() -> None:
    """Point-in-time snapshots of volumes."""


def _snapshots_table(snaps: list[pb.Snapshot], volume_names: dict[str, str]) -> Table:
    t = out.table("NAME", "VOLUME", "SIZE", "STATE", "AGE", "ID")
    for s in snaps:
        vol = volume_names.get(s.volume_id, s.volume_id) or "-"
        t.add_row(out.esc(s.name), out.esc(vol), out.size(s.size_bytes), out.state(s.state),
                  out.age(s.created_at), out.esc(s.id or "-"))
    return t


def _volume_names(c: AdminClient) -> dict[str, str]:
    try:
        return {v.id: v.name for v in paginate(c.volumes.ListVolumes, pb.ListVolumesRequest(), "volumes")}
    except click.ClickException:
        return {}


@snapshot.command("create")
@click.argument("volume_ref", metavar="VOLUME")
@click.argument("name", metavar="SNAPNAME")
@admin_options
def snapshot_create(inv: Invocation, volume_ref: str, name: str) -> None:
    """Snapshot VOLUME as SNAPNAME."""
    with inv.client() as c:
        s = c.volumes.CreateSnapshot(pb.CreateSnapshotRequest(volume_ref=volume_ref, name=name))
    if inv.json:
        out.print_json(out.message_to_dict(s))
    else:
        out.console().print(_snapshots_table([s], {s.volume_id: volume_ref}))


@snapshot.command("list")
@click.argument("volume_ref", metavar="[VOLUME]", required=False)
@admin_options
def snapshot_list(inv: Invocation, volume_ref: str | None) -> None:
    """List snapshots (of VOLUME, or all)."""
    with inv.client() as c:
        snaps = list(paginate(c.volumes.ListSnapshots, pb.ListSnapshotsRequest(volume_ref=volume_ref or ""),
                              "snapshots"))
        names = _volume_names(c) if snaps and not inv.json else {}
    if inv.json:
        out.print_json([out.message_to_dict(s) for s in snaps])
    elif not snaps:
        click.echo("No snapshots.")
    else:
        out.console().print(_snapshots_table(snaps, names))


@snapshot.command("delete")
@click.argument("name", metavar="SNAPNAME")
@admin_options
def snapshot_delete(inv: Invocation, name: str) -> None:
    """Delete snapshot SNAPNAME."""
    with inv.client() as c:
        reply = c.volumes.DeleteSnapshot(pb.DeleteSnapshotRequest(ref=name))
    report_deleted(inv, "snapshot", name, reply.existed)


def report_deleted(inv: Invocation, kind: str, name: str, existed: bool) -> None:
    if inv.json:
        out.print_json({"name": name, "existed": existed})
    elif existed:
        click.echo(f"{kind} {name} deleted")
    else:
        click.echo(f"{kind} {name} did not exist; nothing to delete")


from . import groups, publish, qos, top  # noqa: E402,F401  (their commands join the volume and snapshot groups)
from .nodes import cluster, node  # noqa: E402  (they use the helpers above)

COMMANDS = (volume, node, cluster)
