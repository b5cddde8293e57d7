"""`meshblock events`: what happened to the cluster (docs/operations.md, "Events")."""

from __future__ import annotations

import json

import click

from ..proto.meshblock.v1 import admin_pb2 as pb
from . import output as out
from .admin import Invocation, admin_options, paginate
from .tenants import parse_since

KINDS = ("volume.state", "volume.head", "replica.rebuild", "node.state", "node.drain")
COLUMNS = ("TIME", "KIND", "OBJECT", "MESSAGE")


def _row(e: pb.Event) -> tuple[str, str, str, str]:
    return out.timestamp(e.time), e.kind, e.object, e.message


def _line(e: pb.Event) -> str:
    """One event as a line of text (for --follow, where a table cannot be laid out in advance)."""
    t, kind, obj, message = _row(e)
    return f"{t:<24}  {kind:<15}  {obj:<20}  {message}"


@click.command("events")
@click.option("--since", default=None, metavar="DURATION|TIME",
              help="From this long ago (30m, 2h, 7d) or this time (2026-12-01T10:00, local time).")
@click.option("--volume", default="", metavar="NAME", help="Only the events of this volume (name or id).")
@click.option("--node", default="", metavar="NODE",
              help="Only the events concerning this node (name or id): its own, heads that moved to or from "
                   "it, rebuilds on it.")
@click.option("--kind", default="", metavar="KIND",
              help=f"Only this kind ({', '.join(KINDS)}), or a prefix of kinds: volume, node, replica.")
@click.option("--follow", "-f", is_flag=True,
              help="Then print each new event as it is recorded, until Ctrl-C (with -o json: one JSON object "
                   "per line).")
@admin_options
def events(inv: Invocation, since: str | None, volume: str, node: str, kind: str, follow: bool) -> None:
    """List what happened to the cluster, oldest first: volume state changes, head moves, rebuilds
    and resyncs, nodes going down and coming back, drains. Tenants see their own volumes' events."""
    try:
        start = parse_since(since) if since else 0.0
    except click.BadParameter as e:
        raise click.UsageError(e.format_message()) from None
    req = pb.ListEventsRequest(since=start, volume=volume, node=node, kind=kind)
    with inv.client() as c:
        if follow:
            _follow(inv, c, req)
            return
        found = list(paginate(c.events.ListEvents, req, "events"))
    if inv.json:
        out.print_json([out.message_to_dict(e) for e in found])
        return
    if not found:
        click.echo("No events.")
        return
    t = out.table(*COLUMNS)
    for e in found:
        t.add_row(*(out.esc(x) for x in _row(e)))
    out.console().print(t)


def _follow(inv: Invocation, c, req: pb.ListEventsRequest) -> None:
    if not inv.json:
        click.echo(f"{'TIME':<24}  {'KIND':<15}  {'OBJECT':<20}  MESSAGE")
    try:
        for e in c.watch_events(req):
            click.echo(json.dumps(out.message_to_dict(e)) if inv.json else _line(e))
    except KeyboardInterrupt:
        pass
