"""`meshblock volume publish|unpublish|connect`: which hosts may connect, and how they do.

A host is named by its NQN (NVMe/TCP volumes) or its iSCSI initiator name (iSCSI volumes).
"""

from __future__ import annotations

import shlex
from typing import Any, Callable

import click

from ..proto.meshblock.v1 import admin_pb2 as pb
from . import output as out
from .admin import Invocation, admin_options, volume


def _hosts_line(v: pb.Volume) -> str:
    return ", ".join(v.hosts) if v.hosts else "none"


def _host_options(verb: str) -> Callable[[Callable[..., Any]], Callable[..., Any]]:
    def deco(fn: Callable[..., Any]) -> Callable[..., Any]:
        fn = click.option("--initiator", metavar="IQN", default="",
                          help=f"iSCSI volumes: the initiator name to {verb} (the host's "
                               "/etc/iscsi/initiatorname.iscsi).")(fn)
        return click.option("--host-nqn", metavar="NQN", default="",
                            help=f"NVMe/TCP volumes: the host NQN to {verb} (/etc/nvme/hostnqn).")(fn)
    return deco


def _host(host_nqn: str, initiator: str) -> tuple[str, str]:
    if bool(host_nqn) == bool(initiator):
        raise click.UsageError("give --host-nqn (NVMe/TCP volumes) or --initiator (iSCSI volumes)")
    return host_nqn, initiator


@volume.command("publish")
@click.argument("name")
@_host_options("allow")
@click.option("--dhchap", is_flag=True,
              help="NVMe/TCP: the host must authenticate with DH-HMAC-CHAP; the controller makes its secret "
                   "(`volume connect` gives it). Publishing again keeps the secret.")
@click.option("--dhchap-bidirectional", is_flag=True,
              help="And the target authenticates to the host with a second secret (implies --dhchap).")
@click.option("--rotate-dhchap", is_flag=True,
              help="Replace the host's DH-HMAC-CHAP secrets: connected hosts stay connected; their next "
                   "connection needs the new ones.")
@admin_options
def volume_publish(inv: Invocation, name: str, host_nqn: str, initiator: str, dhchap: bool,
                   dhchap_bidirectional: bool, rotate_dhchap: bool) -> None:
    """Allow a host (NQN, or iSCSI initiator IQN) to connect to volume NAME."""
    host_nqn, initiator = _host(host_nqn, initiator)
    with inv.client() as c:
        v = c.volumes.PublishVolume(pb.PublishVolumeRequest(
            ref=name, host_nqn=host_nqn, initiator_iqn=initiator, dhchap=dhchap,
            dhchap_bidirectional=dhchap_bidirectional, rotate_dhchap=rotate_dhchap))
    who, flag = (initiator, "--initiator") if initiator else (host_nqn, "--host-nqn")
    auth = v.host_auth.get(who, "")
    how = {"dhchap": " (DH-HMAC-CHAP)", "dhchap-bidirectional": " (bidirectional DH-HMAC-CHAP)"}.get(auth, "")
    inv.report(v, f"volume {v.name or name} published to {who}{how}; hosts allowed: {_hosts_line(v)}\n"
                  f"connect with: meshblock volume connect {v.name or name} {flag} {who}")


@volume.command("unpublish")
@click.argument("name")
@_host_options("deny")
@admin_options
def volume_unpublish(inv: Invocation, name: str, host_nqn: str, initiator: str) -> None:
    """Stop allowing a host (NQN, or iSCSI initiator IQN) to connect to volume NAME."""
    host_nqn, initiator = _host(host_nqn, initiator)
    with inv.client() as c:
        v = c.volumes.UnpublishVolume(pb.UnpublishVolumeRequest(ref=name, host_nqn=host_nqn,
                                                                initiator_iqn=initiator))
    inv.report(v, f"volume {v.name or name} unpublished from {initiator or host_nqn}; "
                  f"hosts allowed: {_hosts_line(v)}")


def nvme_connect_line(transport: str, traddr: str, trsvcid: str, subnqn: str, host_nqn: str,
                      dhchap_secret: str = "", dhchap_ctrl_secret: str = "", tls_psk: str = "") -> str:
    argv = ["nvme", "connect", "-t", transport, "-a", traddr, "-s", trsvcid, "-n", subnqn, "--hostnqn", host_nqn]
    if dhchap_secret:
        argv += ["--dhchap-secret", dhchap_secret]
    if dhchap_ctrl_secret:
        argv += ["--dhchap-ctrl-secret", dhchap_ctrl_secret]
    if tls_psk:     # nvme-cli 2.x: TLS with this PSK (interchange format)
        argv += ["--tls", "--tls-key", tls_psk]
    return shlex.join(argv)


def iscsiadm_lines(portal: str, target: str, chap_user: str) -> list[str]:
    """open-iscsi's commands for one portal: discovery, CHAP settings when asked for, login."""
    node = ["iscsiadm", "-m", "node", "-T", target, "-p", portal]
    lines = [shlex.join(["iscsiadm", "-m", "discovery", "-t", "sendtargets", "-p", portal])]
    if chap_user:
        for key, value in (("node.session.auth.authmethod", "CHAP"), ("node.session.auth.username", chap_user)):
            lines.append(shlex.join([*node, "--op", "update", "-n", key, "-v", value]))
        lines.append(shlex.join([*node, "--op", "update", "-n", "node.session.auth.password", "-v"])
                     + ' "$MESHBLOCK_CHAP_SECRET"')
    lines.append(shlex.join([*node, "--login"]))
    return lines


@volume.command("connect")
@click.argument("name")
@_host_options("connect as")
@admin_options
def volume_connect(inv: Invocation, name: str, host_nqn: str, initiator: str) -> None:
    """Print the commands that attach volume NAME on a host: `nvme connect` lines (NVMe/TCP) or
    `iscsiadm` discovery and login lines (iSCSI), one set per path."""
    host_nqn, initiator = _host(host_nqn, initiator)
    with inv.client() as c:
        info = c.volumes.GetConnectInfo(pb.GetConnectInfoRequest(ref=name, host_nqn=host_nqn,
                                                                 initiator_iqn=initiator))
    iscsi = info.protocol == "iscsi"
    host = (info.initiator_iqn or initiator) if iscsi else (info.host_nqn or host_nqn)
    paths = [{"transport": p.transport or "tcp", "traddr": p.traddr, "trsvcid": p.trsvcid,
              "ana_state": p.ana_state} for p in info.paths]
    if inv.json:
        doc = {"protocol": info.protocol or "nvmf", "paths": paths}
        doc.update({"target_iqn": info.target_iqn, "lun": 0, "initiator_iqn": host, "chap_user": info.chap_user}
                   if iscsi else {"subnqn": info.subnqn, "host_nqn": host})
        if info.dhchap_secret:
            doc["dhchap_secret"] = info.dhchap_secret
        if info.dhchap_ctrl_secret:
            doc["dhchap_ctrl_secret"] = info.dhchap_ctrl_secret
        if info.tls_psk:
            doc["tls_psk"] = info.tls_psk
        out.print_json(doc)
        return
    if not paths:
        raise click.ClickException(f"volume {name} has no path to connect to yet "
                                   f"(see `meshblock volume get {name}`)")
    if iscsi:
        click.echo(f"# log in as initiator {host} (InitiatorName= in /etc/iscsi/initiatorname.iscsi); "
                   f"the volume is LUN 0 of {info.target_iqn}")
        if info.chap_user:
            click.echo(f"# CHAP: user {info.chap_user}; put the volume's secret in MESHBLOCK_CHAP_SECRET first")
    for i, (p, raw) in enumerate(zip(paths, info.paths, strict=True), 1):
        where = f"{p['traddr']}:{p['trsvcid']}" + (f" on node {raw.node_id}" if raw.node_id else "")
        click.echo(f"# path {i} of {len(paths)}: {where}, ANA state {p['ana_state'] or 'unknown'}")
        if iscsi:
            portal = f"[{p['traddr']}]:{p['trsvcid']}" if ":" in p["traddr"] else f"{p['traddr']}:{p['trsvcid']}"
            for line in iscsiadm_lines(portal, info.target_iqn, info.chap_user):
                click.echo(line)
        else:
            click.echo(nvme_connect_line(p["transport"], p["traddr"], p["trsvcid"], info.subnqn, host,
                                         info.dhchap_secret, info.dhchap_ctrl_secret, info.tls_psk))
