"""The `meshblock` command."""

from __future__ import annotations

import asyncio
import json
import sys
from pathlib import Path

import click

from .. import __version__
from ..units import format_size


from .types import SIZE, parse_labels  # noqa: E402


class _LazyGroup(click.Group):
    """Subcommand groups whose modules load when a command of theirs runs: a gateway host's
    `meshblock gateway iscsi ...` then imports neither gRPC nor the admin commands."""

    LAZY = {"volume": "admin", "node": "admin", "cluster": "admin", "gateway": "gateway", "csi": "csi",
            "spdk": "provision", "csi-sanity": "provision", "tenant": "tenants", "identity": "tenants",
            "audit": "tenants", "events": "events"}
    ATTR = {"csi": "csi_command", "csi-sanity": "csi_sanity"}

    def list_commands(self, ctx: click.Context) -> list[str]:
        return sorted({*super().list_commands(ctx), *self.LAZY})

    def get_command(self, ctx: click.Context, name: str) -> click.Command | None:
        if name in self.LAZY and name not in self.commands:
            import importlib

            module = importlib.import_module(f"{__package__}.{self.LAZY[name]}")
            self.add_command(getattr(module, self.ATTR.get(name, name)), name)
        return super().get_command(ctx, name)


@click.group(cls=_LazyGroup, context_settings={"help_option_names": ["-h", "--help"]})
@click.version_option(__version__, prog_name="meshblock")
def cli() -> None:
    """meshblock: replicated block storage on SPDK NVMe-oF targets."""


@cli.command()
@click.option("--config", "config_file", type=click.Path(exists=True, dir_okay=False, path_type=Path),
              help="Agent configuration (JSON); flags below override nothing when it is given.")
@click.option("--name", default=None, help="Node name (default: host name).")
@click.option("--data-dir", type=click.Path(path_type=Path), default=None, help="Where the node keeps its files.")
@click.option("--pool-device", default="", help="Block device or file for the pool (default: DATA_DIR/pool.img).")
@click.option("--pool-size", type=SIZE, default="8GiB", show_default=True, help="Size of a pool file created here.")
@click.option("--nvmf-address", default="127.0.0.1", show_default=True, help="NVMe/TCP listen address.")
@click.option("--nvmf-port", type=int, default=4420, show_default=True)
@click.option("--nvmf-tls-port", type=int, default=0,
              help="NVMe/TCP port of TLS volumes' heads (default: --nvmf-port + 2).")
@click.option("--iscsi-address", default="",
              help="iSCSI portal address of this node's heads (default: --nvmf-address).")
@click.option("--iscsi-port", type=int, default=3260, show_default=True, help="iSCSI portal port.")
@click.option("--listen", default="", help="gRPC address(es), comma-separated: unix:/path (default "
                                           "DATA_DIR/agent.sock) and/or host:port (mutual TLS).")
@click.option("--spdk-socket", default="", help="RPC socket of the SPDK target.")
@click.option("--spdk-external", is_flag=True, help="Adopt a target someone else runs at --spdk-socket.")
@click.option("--cpumask", default="0x1", show_default=True, help="Cores of the data target.")
@click.option("--head-cpumask", default="0x1", show_default=True,
              help="Cores of the (polling) head target, started when the node hosts replicated or iSCSI heads.")
@click.option("--head-app", default="", help="SPDK program of the head target (default: spdk_tgt where the build "
                                             "has it, which serves NVMe/TCP and iSCSI; nvmf_tgt has no iSCSI).")
@click.option("--mem-size", type=int, default=1024, show_default=True, help="SPDK memory pool in MB.")
@click.option("--interrupt-mode/--polling", default=True, show_default=True,
              help="Let the replica target sleep when idle (AIO pools support it).")
@click.option("--label", multiple=True, callback=parse_labels, help="Node label key=value (zone, rack, ...).")
@click.option("--controller", default="", help="Controller endpoint(s) to register with, comma-separated.")
@click.option("--tls-cert", default="", help="This node's certificate (PEM): serves a TCP --listen and "
                                              "identifies the node to a controller reached over TCP.")
@click.option("--tls-key", default="", help="Key of --tls-cert.")
@click.option("--tls-ca", default="", help="CA that signed the controller's certificates (PEM).")
@click.option("--advertise", default="", help="Endpoint the controller dials (default: the TCP --listen address).")
@click.option("--metrics-port", type=int, default=0, help="Serve Prometheus metrics on --metrics-address:PORT.")
@click.option("--metrics-address", default="127.0.0.1", show_default=True,
              help="Address the metrics are served on (a Prometheus on another host needs the pod's or the "
                   "node's address).")
@click.option("--log-level", default="INFO", show_default=True)
def agent(config_file, name, data_dir, pool_device, pool_size, nvmf_address, nvmf_port, nvmf_tls_port, iscsi_address,
          iscsi_port,
          listen, spdk_socket, spdk_external, cpumask, head_cpumask, head_app, mem_size, interrupt_mode, label,
          controller, tls_cert, tls_key, tls_ca, advertise, metrics_port, metrics_address, log_level) -> None:
    """Run a node agent: its SPDK target, pool, replicas and exports."""
    import socket

    from ..agent.config import AgentConfig
    from ..agent.server import run_agent
    from ..logsetup import setup_logging
    from ..spdk import SpdkNotFoundError

    if config_file:
        cfg = AgentConfig.from_file(config_file)
    else:
        if data_dir is None:
            raise click.UsageError("--data-dir or --config is required")
        labels = label
        cfg = AgentConfig(name=name or socket.gethostname(), data_dir=data_dir, pool_device=pool_device,
                          pool_size_bytes=pool_size, nvmf_address=nvmf_address, nvmf_port=nvmf_port,
                          tls_port=nvmf_tls_port,
                          iscsi_address=iscsi_address, iscsi_port=iscsi_port, listen=listen, spdk_socket=spdk_socket,
                          spdk_external=spdk_external, cpumask=cpumask, head_cpumask=head_cpumask, head_app=head_app,
                          mem_size_mb=mem_size, interrupt_mode=interrupt_mode, labels=labels, controller=controller,
                          tls_cert=tls_cert, tls_key=tls_key, tls_ca=tls_ca, advertise=advertise)
    tcp = [a for a in cfg.listen.split(",") if a.strip() and not a.strip().startswith("unix:")]
    remote = [e for e in cfg.controller.split(",") if e.strip() and not e.strip().startswith("unix:")]
    if (tcp or remote) and not (cfg.tls_cert and cfg.tls_key and cfg.tls_ca):
        raise click.UsageError("a TCP --listen or --controller needs --tls-cert, --tls-key and --tls-ca "
                               "(agents and controllers talk over mutual TLS)")
    setup_logging(log_level, prefix=f"node={cfg.name}")
    try:
        asyncio.run(run_agent(cfg, metrics_port=metrics_port, metrics_address=metrics_address))
    except SpdkNotFoundError as e:
        raise click.ClickException(str(e))


@cli.command()
@click.option("--store", "store_url", default=None,
              help="State store URL: sqlite:///path/state.db (default under MESHBLOCK_HOME) or "
                   "etcd://host:port[,host:port]?prefix=/meshblock.")
@click.option("--listen", default=None, help="API address(es), comma-separated: unix:/path (default "
                                             "MESHBLOCK_HOME/controller.sock) and/or host:port (needs --tls-cert, "
                                             "--tls-key, --tls-client-ca).")
@click.option("--identity", default="", help="Name of this controller in leader elections.")
@click.option("--node-timeout", type=float, default=3.0, show_default=True,
              help="Seconds without a heartbeat before a node is down.")
@click.option("--heartbeat-interval", type=click.FloatRange(0.1, 60), default=1.0, show_default=True,
              help="Seconds between an agent's heartbeats (agents are told at registration). Large clusters "
                   "use a longer interval and node timeout: 1,000 nodes at 1 s are 1,000 calls a second.")
@click.option("--overcommit", type=float, default=4.0, show_default=True,
              help="Limit of provisioned / pool capacity per node (thin provisioning).")
@click.option("--orphan-grace", type=float, default=60.0, show_default=True,
              help="Seconds a replica lvol no record owns may stay before it is deleted.")
@click.option("--replace-after", type=float, default=600.0, show_default=True,
              help="Seconds a replica (or shard) may stay out before a new one is placed on another node and "
                   "rebuilt; one that returns sooner is added back and rebuilt where it is.")
@click.option("--tls-cert", default="")
@click.option("--tls-key", default="")
@click.option("--tls-client-ca", default="")
@click.option("--agent-tls-name", default="", help="Name in the agents' certificates, when they share one "
                                                   "(default: each agent's address is checked).")
@click.option("--standby-heads/--no-standby-heads", default=True, show_default=True,
              help="Export replicated NVMe/TCP volumes from every replica node (ANA inaccessible except on the "
                   "head), so hosts with native multipath ride a head failover without reconnecting. Each "
                   "such node runs a polling head target (a busy core).")
@click.option("--head-lease/--no-head-lease", default=True, show_default=True,
              help="Agents that lose the controller for one heartbeat less than the node timeout stop serving the "
                   "volumes they head (ANA inaccessible) until it answers again: a head cut off from the controller "
                   "stops before another node is promoted, at the cost of a pause of replicated volumes while no "
                   "controller answers.")
@click.option("--metrics-port", type=int, default=0, help="Serve Prometheus metrics on --metrics-address:PORT.")
@click.option("--metrics-address", default="127.0.0.1", show_default=True,
              help="Address the metrics are served on (a Prometheus on another host needs the pod's or the "
                   "node's address).")
@click.option("--head-sweep-interval", type=click.FloatRange(0.5, 3600), default=10.0, show_default=True,
              help="Seconds between two sweeps of the nodes' heads: a head that lost a leg or its QoS limits is "
                   "found within this (and the node's next digest), without any node going down.")
@click.option("--rebuild-visits", type=click.FloatRange(0.001), default=20.0, show_default=True,
              help="Visits a second that all volumes with a rebuilding replica share (each is visited at most "
                   "every 0.5 s): in a mass resync, progress is polled less often instead of crowding out "
                   "other work; a finished rebuild is still found by the head sweep.")
@click.option("--secrets-key-file", default="", metavar="FILE",
              help="Key that seals the secrets kept in the store (DH-HMAC-CHAP): 32 random bytes in base64 "
                   "(head -c 32 /dev/urandom | base64 > FILE). Default: $MESHBLOCK_SECRETS_KEY; without "
                   "either, publishing with --dhchap is refused.")
@click.option("--audit-max-age", type=click.FloatRange(0), default=90.0, show_default=True,
              help="Days the audit log keeps an event (0: no limit by age).")
@click.option("--audit-max-events", type=click.IntRange(0), default=100_000, show_default=True,
              help="Events the audit log keeps at most, the oldest pruned first (0: no limit by count).")
@click.option("--audit-prune-interval", type=click.FloatRange(0.1), default=60.0, show_default=True,
              help="Seconds between two prunings of the audit log and of the event log (by the leader).")
@click.option("--events-max-age", type=click.FloatRange(0), default=30.0, show_default=True,
              help="Days the event log (`meshblock events`) keeps an event (0: no limit by age).")
@click.option("--events-max-events", type=click.IntRange(0), default=100_000, show_default=True,
              help="Events the event log keeps at most, the oldest pruned first (0: no limit by count).")
@click.option("--log-level", default="INFO", show_default=True)
def controller(store_url, listen, identity, node_timeout, heartbeat_interval, overcommit, orphan_grace, replace_after, tls_cert, tls_key,
               tls_client_ca,
               agent_tls_name, standby_heads, head_lease,
               metrics_port, metrics_address, head_sweep_interval, rebuild_visits, secrets_key_file, audit_max_age, audit_max_events, audit_prune_interval, events_max_age, events_max_events,
               log_level) -> None:
    """Run a controller (one is active; others wait as standbys)."""
    from ..control.audit import Retention
    from ..control.server import ControllerConfig, LeadershipLost, run_controller
    from ..logsetup import setup_logging
    from .local import meshblock_home

    home = meshblock_home()
    if listen and any(not a.strip().startswith("unix:") for a in listen.split(",")):
        if not (tls_cert and tls_key and tls_client_ca):
            raise click.UsageError("a TCP --listen needs --tls-cert, --tls-key and --tls-client-ca "
                                   "(there is no unauthenticated TCP listener)")
    cfg = ControllerConfig(store_url=store_url or f"sqlite:///{home / 'controller' / 'state.db'}",
                           listen=listen or f"unix:{home / 'controller.sock'}", identity=identity,
                           node_timeout=node_timeout, heartbeat_ms=int(heartbeat_interval * 1000),
                           overcommit=overcommit, orphan_grace=orphan_grace,
                           replace_after=replace_after, tls_cert=tls_cert, tls_key=tls_key,
                           tls_client_ca=tls_client_ca, metrics_port=metrics_port, metrics_address=metrics_address,
                           agent_tls_name=agent_tls_name,
                           standby_heads=standby_heads, head_lease=head_lease, secrets_key_file=secrets_key_file,
                           head_sweep_interval=head_sweep_interval, rebuild_visits=rebuild_visits,
                           audit=Retention(max_age=audit_max_age * 86400, max_events=audit_max_events,
                                           prune_every=audit_prune_interval),
                           events=Retention(max_age=events_max_age * 86400, max_events=events_max_events,
                                            prune_every=audit_prune_interval))
    if cfg.store_url.startswith("sqlite:///"):
        Path(cfg.store_url[len("sqlite:///"):]).parent.mkdir(parents=True, exist_ok=True)
    explicit = click.get_current_context().get_parameter_source("heartbeat_interval") != \
        click.core.ParameterSource.DEFAULT
    if explicit and heartbeat_interval * 2 > node_timeout:
        raise click.UsageError(f"--node-timeout ({node_timeout} s) must be at least two heartbeat intervals "
                               f"({heartbeat_interval} s): one late heartbeat must not take a node down")
    from ..secretbox import SecretBox, SecretsKeyError
    try:
        SecretBox.load(secrets_key_file)
    except SecretsKeyError as e:
        raise click.UsageError(str(e)) from None
    setup_logging(log_level, prefix="controller")
    try:
        asyncio.run(run_controller(cfg))
    except LeadershipLost:
        sys.exit(3)


@cli.command()
@click.option("--nodes", type=click.IntRange(1, 16), default=3, show_default=True, help="Storage nodes to start.")
@click.option("--home", default=None, help="Data directory (default $MESHBLOCK_HOME or ~/.meshblock).")
@click.option("--pool-size", type=SIZE, default="8GiB", show_default=True, help="Sparse pool file per node.")
@click.option("--port", type=int, default=4420, show_default=True, help="NVMe/TCP port of every node.")
@click.option("--node-timeout", type=click.FloatRange(0.5, 300), default=3.0, show_default=True,
              help="Seconds without a heartbeat before a node counts as down (and its heads fail over).")
@click.option("--standby-heads/--no-standby-heads", default=False, show_default=True,
              help="Export replicated volumes from every replica node (multipath failover without reconnecting). "
                   "Off by default here: every node then runs a busy-polling head target on this one machine.")
@click.option("-o", "--output", type=click.Choice(["table", "json"]), default="table")
def up(nodes, home, pool_size, port, node_timeout, standby_heads, output) -> None:
    """Start a local cluster in the background: N nodes, each an agent with its own SPDK target."""
    import time

    from ..spdk import SpdkNotFoundError
    from . import local

    h = local.meshblock_home(home)
    t0 = time.monotonic()
    try:
        procs = asyncio.run(local.up(h, nodes, pool_size, port=port, node_timeout=node_timeout,
                                     standby_heads=standby_heads))
    except (SpdkNotFoundError, local.ClusterError) as e:
        raise click.ClickException(str(e))
    took = time.monotonic() - t0
    if output == "json":
        click.echo(json.dumps({"home": str(h), "seconds": round(took, 2), "nodes": [p.__dict__ for p in procs]},
                              indent=2))
        return
    from rich.console import Console
    from rich.table import Table

    t = Table(title=f"meshblock local cluster ({nodes} nodes, up in {took:.1f}s)")
    for col in ("process", "NVMe/TCP", "API", "metrics", "data"):
        t.add_column(col)
    for p in procs:
        t.add_row(p.name, f"{p.nvmf_address}:{p.nvmf_port}" if p.nvmf_port else "-", p.listen,
                  p.metrics_url or "-", p.data_dir)
    Console().print(t)
    click.echo(f"MESHBLOCK_HOME={h}  pool {format_size(pool_size)} per node; `meshblock down` stops everything.")


@cli.command()
@click.option("--home", default=None, help="Data directory (default $MESHBLOCK_HOME or ~/.meshblock).")
def down(home) -> None:
    """Stop the local cluster started by `meshblock up` (data files are kept)."""
    from . import local

    asyncio.run(local.down(local.meshblock_home(home), log=click.echo))


def main() -> None:
    cli(prog_name="meshblock")


if __name__ == "__main__":
    sys.exit(main())
