"""`meshblock gateway ...`: re-export block devices attached on this host to initiators of other protocols.

`meshblock gateway iscsi export|unexport|list` drives the kernel's LIO target
(meshblock.target.lio) on the gateway host itself, as root; it does not talk to
the controller.
"""

from __future__ import annotations

import click

from ..target.lio_model import ExportInfo, InvalidExport, LioError, Portal
from . import output as out

# Where an invalid field of an export comes from on the command line.
_OPTION_OF_FIELD = {
    "iqn": "--iqn", "initiators": "--initiator", "device": "--device", "portals": "--portal",
    "portal": "--portal", "portal.address": "--portal", "portal.port": "--portal",
    "chap.user": "--chap-user", "chap.secret": "--chap-secret",
    "mutual_chap": "--mutual-chap-user", "mutual_chap.user": "--mutual-chap-user",
    "mutual_chap.secret": "--mutual-chap-secret",
}


class PortalType(click.ParamType):
    """ADDR[:PORT] or [IPv6][:PORT]; the port defaults to 3260."""

    name = "portal"

    def convert(self, value, param, ctx):  # type: ignore[override]
        if isinstance(value, Portal):
            return value
        try:
            p = Portal.parse(value)
            p.validate()
        except InvalidExport as e:
            self.fail(_problem(e), param, ctx)
        return p


def _problem(e: InvalidExport) -> str:
    text = str(e)
    prefix = f"{e.field}: "
    return text.removeprefix(prefix)


def _bad(e: InvalidExport) -> click.BadParameter:
    return click.BadParameter(_problem(e), param_hint=_OPTION_OF_FIELD.get(e.field, e.field))


def _pair(user: str | None, secret: str | None, what: str) -> tuple[str, str] | None:
    if not user and not secret:
        return None
    if not user or not secret:
        raise click.UsageError(f"--{what}-user and --{what}-secret go together")
    return user, secret


output_option = click.option("-o", "--output", type=click.Choice(["table", "json"]), default="table",
                             show_default=True)


@click.group()
def gateway() -> None:
    """Gateways on this host: serve attached volumes to initiators of other protocols."""


@gateway.group()
def iscsi() -> None:
    """iSCSI targets of the kernel's LIO (run as root on the gateway host)."""


@iscsi.command("export")
@click.option("--device", required=True, help="Block device to export, e.g. /dev/disk/by-id/nvme-uuid.<uuid>.")
@click.option("--iqn", required=True, help="Target name, e.g. iqn.2026-11.io.meshblock:gw:<volume>.")
@click.option("--initiator", "initiators", multiple=True, required=True,
              help="Initiator IQN allowed to log in (repeat for several).")
@click.option("--chap-user", default=None, help="CHAP user the initiators must present.")
@click.option("--chap-secret", default=None, envvar="MESHBLOCK_CHAP_SECRET", show_envvar=True,
              help="CHAP secret, 12-255 characters (prefer the environment variable: arguments are visible "
                   "to every user of the host).")
@click.option("--mutual-chap-user", default=None, help="CHAP user the target presents back (mutual CHAP).")
@click.option("--mutual-chap-secret", default=None, envvar="MESHBLOCK_MUTUAL_CHAP_SECRET", show_envvar=True,
              help="Mutual CHAP secret; must differ from --chap-secret.")
@click.option("--portal", "portals", type=PortalType(), multiple=True, default=("0.0.0.0:3260",),
              show_default=True, help="ADDR[:PORT] to listen on (repeat for several).")
@output_option
def export_cmd(device, iqn, initiators, chap_user, chap_secret, mutual_chap_user, mutual_chap_secret, portals,
               output) -> None:
    """Export DEVICE as LUN 0 of target IQN to the given initiators (idempotent; reconciles ACLs)."""
    from ..target import lio

    chap = _pair(chap_user, chap_secret, "chap")
    mutual = _pair(mutual_chap_user, mutual_chap_secret, "mutual-chap")
    try:
        result = lio.export(device, iqn, initiators, chap=chap, mutual_chap=mutual, portals=portals)
    except InvalidExport as e:
        raise _bad(e) from None
    except LioError as e:
        raise click.ClickException(str(e)) from None
    if output == "json":
        out.print_json({"changed": result.changed, "changes": list(result.changes), "export": result.export.to_dict()})
        return
    for line in result.changes or ("already exported as asked; nothing changed",):
        click.echo(line)
    out.console().print(_exports_table([result.export]))


@iscsi.command("unexport")
@click.argument("iqn")
@output_option
def unexport_cmd(iqn, output) -> None:
    """Remove the export of IQN: its target (open sessions end) and its backstore; the device is untouched."""
    from ..target import lio

    try:
        removed = lio.unexport(iqn)
    except InvalidExport as e:
        raise click.BadParameter(_problem(e), param_hint="IQN") from None
    except LioError as e:
        raise click.ClickException(str(e)) from None
    if output == "json":
        out.print_json({"iqn": iqn, "removed": removed})
    else:
        click.echo(f"{iqn}: removed" if removed else f"{iqn}: not exported; nothing to do")


@iscsi.command("list")
@output_option
def list_cmd(output) -> None:
    """The iSCSI exports meshblock made on this host."""
    from ..target import lio

    try:
        exports = lio.list_exports()
    except LioError as e:
        raise click.ClickException(str(e)) from None
    if output == "json":
        out.print_json([e.to_dict() for e in exports])
    else:
        out.console().print(_exports_table(exports))


def _exports_table(exports: list[ExportInfo]):
    t = out.table("IQN", "DEVICE", "PORTALS", "INITIATORS", "CHAP", "LOGGED IN", "ENABLED")
    for e in exports:
        chap = e.chap_user + (f" (mutual {e.mutual_chap_user})" if e.mutual_chap_user else "") if e.chap_user else "-"
        t.add_row(out.esc(e.iqn), out.esc(e.device or "-"), out.esc(" ".join(str(p) for p in e.portals) or "-"),
                  out.esc("\n".join(e.initiators) or "-"), out.esc(chap), out.esc("\n".join(e.sessions) or "-"),
                  "yes" if e.enabled else "no")
    return t
