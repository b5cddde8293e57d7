"""The node and cluster commands: `meshblock node ...`, `meshblock cluster ...`."""

from __future__ import annotations

import time
from typing import Any

import click
from rich.console import Group
from rich.progress_bar import ProgressBar
from rich.table import Table

from ..proto.meshblock.v1 import admin_pb2 as pb
from . import output as out
from .admin import Invocation, _stopped_waiting, admin_options, timeout_option


# -- nodes --------------------------------------------------------------------------------------------------

@click.group()
def node() -> None:
    """Storage nodes: list, inspect, cordon and drain."""


def _scheduling(n: pb.Node) -> str:
    if n.draining:
        return "[yellow]draining[/yellow]"
    if n.cordoned:
        return "[yellow]cordoned[/yellow]"
    return "schedulable"


def _drain_text(n: pb.Node) -> str:
    d = n.drain
    if not (n.draining or d.replicas_total or d.done):
        return "-"
    text = f"{d.replicas_moved} of {d.replicas_total} replicas moved"
    return text + (", done" if d.done else "")


def _ready(n: pb.Node, reason: bool = False) -> str:
    """Whether the node could go down now (a restart, an upgrade), and with ``reason`` why not."""
    if not n.HasField("readiness"):
        return "-"
    if n.readiness.ready:
        return "[green]ready[/green]"
    return "[yellow]not ready[/yellow]" + (f": {out.esc(n.readiness.reason)}" if reason and n.readiness.reason else "")


def nodes_table(nodes: list[pb.Node]) -> Table:
    t = out.table("NAME", "STATE", "READY", "SCHEDULING", "NVME/TCP", "CAPACITY", "FREE", "PROVISIONED",
                  "REPLICAS", "LABELS", "LAST SEEN")
    for n in nodes:
        addr = f"{n.nvmf_address}:{n.nvmf_port}" if n.nvmf_address else "-"
        t.add_row(out.esc(n.name), out.state(n.state), _ready(n), _scheduling(n), out.esc(addr),
                  out.size(n.total_bytes),
                  out.size(n.free_bytes), out.size(n.provisioned_bytes), str(n.replica_count),
                  out.labels(n.labels), f"{out.age(n.last_seen)} ago" if n.last_seen else "-")
    return t


def node_view(n: pb.Node) -> Group:
    rows: list[tuple[str, Any]] = [
        ("Node", f"[bold]{out.esc(n.name)}[/bold]"),
        ("ID", out.esc(n.id or "-")),
        ("State", out.state(n.state)),
        ("Ready", _ready(n, reason=True)),
        ("Scheduling", _scheduling(n)),
        ("NVMe/TCP", out.esc(f"{n.nvmf_address}:{n.nvmf_port}" if n.nvmf_address else "-")),
        ("Agent", out.esc(n.endpoint or "-")),
        ("Host NQN", out.esc(n.host_nqn or "-")),
        ("Capacity", out.size(n.total_bytes)),
        ("Free", out.size(n.free_bytes)),
        ("Provisioned", out.size(n.provisioned_bytes)),
        ("Replicas", str(n.replica_count)),
        ("Labels", out.labels(n.labels)),
        ("Last seen", f"{out.timestamp(n.last_seen)} ({out.age(n.last_seen)} ago)" if n.last_seen else "-"),
    ]
    parts: list[Any] = [out.properties(rows)]
    if n.draining or n.drain.replicas_total:
        d = n.drain
        g = Table.grid(padding=(0, 1))
        moved = d.replicas_moved if d.replicas_total else 1
        bar = ProgressBar(total=max(d.replicas_total, 1), completed=moved, width=24)
        g.add_row("[bold]Drain[/bold]", bar, _drain_text(n))
        parts.append(g)
    return Group(*parts)


def show_node(inv: Invocation, n: pb.Node) -> None:
    if inv.json:
        out.print_json(out.message_to_dict(n))
    else:
        out.console().print(node_view(n))


@node.command("list")
@admin_options
def node_list(inv: Invocation) -> None:
    """List the storage nodes."""
    with inv.client() as c:
        nodes = list(c.nodes.ListNodes(pb.ListNodesRequest()).nodes)
    if inv.json:
        out.print_json([out.message_to_dict(n) for n in nodes])
    elif not nodes:
        click.echo("No nodes have registered.")
    else:
        out.console().print(nodes_table(nodes))


@node.command("get")
@click.argument("name")
@admin_options
def node_get(inv: Invocation, name: str) -> None:
    """Show node NAME in detail."""
    with inv.client() as c:
        n = c.nodes.GetNode(pb.GetNodeRequest(ref=name))
    show_node(inv, n)


@node.command("cordon")
@click.argument("name")
@admin_options
def node_cordon(inv: Invocation, name: str) -> None:
    """Place no new replicas on node NAME."""
    with inv.client() as c:
        n = c.nodes.CordonNode(pb.CordonNodeRequest(ref=name))
    inv.report(n, f"node {n.name or name} cordoned: no new replicas will be placed on it")


@node.command("uncordon")
@click.argument("name")
@admin_options
def node_uncordon(inv: Invocation, name: str) -> None:
    """Let node NAME take new replicas again."""
    with inv.client() as c:
        n = c.nodes.UncordonNode(pb.UncordonNodeRequest(ref=name))
    inv.report(n, f"node {n.name or name} uncordoned: it takes new replicas again")


@node.command("drain")
@click.argument("name")
@click.option("--wait/--no-wait", default=False, show_default=True,
              help="Wait until every replica has moved off the node, with a progress bar.")
@timeout_option(None)
@admin_options
def node_drain(inv: Invocation, name: str, wait: bool, timeout: float | None) -> None:
    """Cordon node NAME and move every replica off it."""
    from rich.progress import (
        BarColumn,
        MofNCompleteColumn,
        Progress,
        SpinnerColumn,
        TextColumn,
        TimeElapsedColumn,
    )

    with inv.client() as c:
        n = c.nodes.DrainNode(pb.DrainNodeRequest(ref=name))
        label = n.name or name
        if wait and not n.drain.done:
            deadline = time.monotonic() + timeout if timeout else None
            delay = 0.1
            progress = Progress(SpinnerColumn(), TextColumn(f"draining {out.esc(label)}"), BarColumn(),
                                MofNCompleteColumn(), TextColumn("replicas moved"), TimeElapsedColumn(),
                                console=out.console(stderr=True))
            try:
                with progress:
                    task = progress.add_task("drain", total=n.drain.replicas_total or None,
                                             completed=n.drain.replicas_moved)
                    while not n.drain.done:
                        if deadline is not None and time.monotonic() >= deadline:
                            raise click.ClickException(
                                f"timed out after {out.duration(timeout or 0)} waiting for node {label} "
                                f"to drain ({_drain_text(n)}); the drain goes on")
                        pause = delay if deadline is None else min(delay, max(deadline - time.monotonic(), 0))
                        time.sleep(pause)
                        delay = min(delay * 1.5, 1.0)
                        n = c.nodes.GetNode(pb.GetNodeRequest(ref=n.id or name))
                        progress.update(task, total=n.drain.replicas_total or None,
                                        completed=n.drain.replicas_moved)
            except KeyboardInterrupt:
                raise _stopped_waiting(f"the drain of node {label}",
                                       f"see `meshblock node get {label}`") from None
    if inv.json:
        out.print_json(out.message_to_dict(n))
    elif n.drain.done:
        click.echo(f"node {label} drained: {_drain_text(n)}")
    else:
        click.echo(f"node {label} is draining: {_drain_text(n)}; "
                   f"follow with `meshblock node drain {label} --wait`")


@node.command("restart")
@click.argument("name")
@click.option("--home", default=None, help="The local cluster's directory (default $MESHBLOCK_HOME or ~/.meshblock).")
@click.option("--force", is_flag=True, help="Restart the node even when it is not ready (a volume may pause or "
                                             "lose its last in-sync replica meanwhile).")
@click.option("--timeout", type=click.FloatRange(1, None), default=300.0, show_default=True,
              help="Seconds to wait for the node to be ready again after the restart.")
def node_restart(name: str, home: str | None, force: bool, timeout: float) -> None:
    """Restart node NAME of the local cluster `meshblock up` started: stop its agent and SPDK
    targets, start them again with the same configuration and wait until the node is ready (its
    replicas in sync, and no volume would lose its last in-sync replica or its head with it). A
    node that is not ready is refused unless --force. On Kubernetes, the agents' DaemonSet rolls
    one node at a time on the same readiness."""
    import asyncio

    from . import local

    h = local.meshblock_home(home)
    try:
        asyncio.run(local.restart_node(h, name, force=force, timeout=timeout,
                                       log=lambda m: click.echo(m, err=True)))
    except local.ClusterError as e:
        raise click.ClickException(str(e))
    click.echo(f"node {name} restarted and ready")


# -- cluster ------------------------------------------------------------------------------------------------

@click.group()
def cluster() -> None:
    """The cluster as a whole."""


def cluster_view(s: pb.ClusterStatus) -> Group:
    used = max(s.total_bytes - s.free_bytes, 0)
    used_pct = f", {used / s.total_bytes:.0%}" if s.total_bytes else ""
    ratio = f"{s.provisioned_bytes / s.total_bytes:.2f}x of capacity" if s.total_bytes else "no capacity"
    limit = f"; overcommit limit {s.overcommit_ratio:.2f}x" if s.overcommit_ratio else ""
    total_volumes = sum(s.volumes_by_state.values())
    by_state = ", ".join(f"{out.state(k)} {s.volumes_by_state[k]}" for k in sorted(s.volumes_by_state)
                         if s.volumes_by_state[k])
    rows: list[tuple[str, Any]] = [
        ("Leader", out.esc(s.leader or "-")),
        ("Nodes", f"[green]{s.nodes_up} up[/green], " + (f"[red]{s.nodes_down} down[/red]" if s.nodes_down
                                                         else "0 down")),
        ("Capacity", f"{out.size(s.total_bytes)} total, {out.size(s.free_bytes)} free "
                     f"({out.size(used)} used{used_pct})"),
        ("Provisioned", f"{out.size(s.provisioned_bytes)} ({ratio}{limit})"),
        ("Volumes", f"{total_volumes}" + (f": {by_state}" if by_state else "")),
        ("Metrics", metrics_text(s.metrics_endpoints)),
    ]
    return Group(out.properties(rows))


def metrics_text(endpoints) -> str:
    """One line per Prometheus endpoint: which process serves it, and its URL."""
    if not endpoints:
        return "- (no process serves metrics; start them with --metrics-port)"
    width = max(len(e.component) + (len(e.node) + 1 if e.node else 0) for e in endpoints)
    return "\n".join(out.esc(f"{(e.component + ' ' + e.node).strip():<{width}}  {e.url}") for e in endpoints)


@cluster.command("status")
@admin_options
def cluster_status(inv: Invocation) -> None:
    """Nodes up and down, capacity, provisioning, volumes by state and where Prometheus scrapes the
    controller and each node's agent."""
    with inv.client() as c:
        s = c.cluster.GetClusterStatus(pb.GetClusterStatusRequest())
    if inv.json:
        out.print_json(out.message_to_dict(s))
    else:
        out.console().print(cluster_view(s))
