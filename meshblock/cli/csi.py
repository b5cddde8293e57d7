"""`meshblock csi`: the CSI plugin process (controller role, node role or both)."""

from __future__ import annotations

import asyncio
import socket

import click

from .types import parse_labels


@click.command("csi")
@click.option("--endpoint", envvar="CSI_ENDPOINT", required=True, show_envvar=True,
              help="Where to serve CSI: unix:///path/to/csi.sock.")
@click.option("--controller", "controller_role", is_flag=True, help="Serve the Controller service.")
@click.option("--node", "node_role", is_flag=True, help="Serve the Node service (attach volumes on this host).")
@click.option("--node-id", envvar="NODE_NAME", default=None, show_envvar=True,
              help="This host's id for the node role (default: host name); a Kubernetes node name.")
@click.option("--host-nqn", default=None, help="NVMe host NQN of this host (default: /etc/nvme/hostnqn).")
@click.option("--initiator-iqn", default=None,
              help="iSCSI initiator name this node logs in with (default: InitiatorName= of "
                   "/etc/iscsi/initiatorname.iscsi; without one the node attaches no iSCSI volumes).")
@click.option("--admin-endpoint", envvar="MESHBLOCK_ENDPOINT", default="", show_envvar=True,
              help="The controller's admin API: unix:/path or host:port (mutual TLS with --ca/--cert/--key).")
@click.option("--ca", envvar="MESHBLOCK_CA", default="", show_envvar=True, help="CA certificate file (PEM).")
@click.option("--cert", envvar="MESHBLOCK_CERT", default="", show_envvar=True, help="Client certificate (PEM).")
@click.option("--key", envvar="MESHBLOCK_KEY", default="", show_envvar=True, help="Client key (PEM).")
@click.option("--admin-token-file", default="", metavar="FILE",
              help="The plugin's own admin API token (default: $MESHBLOCK_TOKEN), used for calls whose CSI "
                   "secrets hold no tenantToken (docs/kubernetes.md).")
@click.option("--max-volumes", type=int, default=0, show_default=True,
              help="Volumes this node may attach (0: no limit).")
@click.option("--label", "labels", multiple=True, metavar="KEY=VALUE", callback=parse_labels,
              help="Labels registered with this host.")
@click.option("--log-level", default="INFO", show_default=True)
def csi_command(endpoint, controller_role, node_role, node_id, host_nqn, initiator_iqn, admin_endpoint, ca, cert, key,
                admin_token_file, max_volumes, labels, log_level) -> None:
    """Run the CSI plugin (csi.meshblock.io)."""
    from ..csi.host.iscsi import INITIATOR_FILE, initiator_name
    from ..csi.server import PluginConfig, host_nqn_of_machine, run_plugin
    from ..errors import InvalidArgument
    from ..logsetup import setup_logging
    from ..util import check_iqn

    if not (controller_role or node_role):
        raise click.UsageError("give --controller, --node or both")
    if controller_role and not admin_endpoint:
        raise click.UsageError("--controller needs --admin-endpoint (the controller's admin API)")
    parsed = labels
    configured = initiator_name() if node_role else ""
    try:
        if initiator_iqn:
            initiator_iqn = check_iqn("--initiator-iqn", initiator_iqn)
        elif configured:
            initiator_iqn = check_iqn(str(INITIATOR_FILE), configured)
    except InvalidArgument as e:
        raise click.UsageError(str(e)) from None
    cfg = PluginConfig(endpoint=endpoint, controller=controller_role, node=node_role,
                       node_id=node_id or socket.gethostname(), host_nqn=host_nqn or host_nqn_of_machine(),
                       admin_endpoint=admin_endpoint, ca=ca, cert=cert, key=key, max_volumes=max_volumes,
                       token=_token(admin_token_file),
                       labels=parsed, initiator_iqn=initiator_iqn)
    if node_role and not cfg.host_nqn:
        raise click.UsageError("no host NQN: /etc/nvme/hostnqn is missing; give --host-nqn")
    setup_logging(log_level, prefix="csi")
    try:
        asyncio.run(run_plugin(cfg))
    except ValueError as e:
        raise click.ClickException(str(e)) from None


def _token(path: str) -> str:
    import os
    from pathlib import Path

    if not path:
        return os.environ.get("MESHBLOCK_TOKEN", "").strip()
    try:
        return Path(path).read_text().strip()
    except OSError as e:
        raise click.UsageError(f"--admin-token-file {path}: {e.strerror or e}") from None
