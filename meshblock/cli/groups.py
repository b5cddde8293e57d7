"""`meshblock volume snapshot group create|list|get|delete`: snapshots of several volumes at one
instant (crash-consistent together), for applications that spread their data over volumes."""

from __future__ import annotations

import click
from rich.table import Table

from ..proto.meshblock.v1 import admin_pb2 as pb
from . import output as out
from .admin import Invocation, _snapshots_table, _volume_names, admin_options, paginate, report_deleted, snapshot


@snapshot.group("group")
def group() -> None:
    """Group snapshots: every volume of the group at one instant (NVMe/TCP volumes)."""


def _groups_table(groups: list[pb.GroupSnapshot]) -> Table:
    t = out.table("NAME", "VOLUMES", "STATE", "WRITES HELD", "AGE", "ID")
    for g in groups:
        held = f"{g.hold_ms} ms" if g.state == "ready" else "-"
        t.add_row(out.esc(g.name), str(len(g.volume_ids)), out.state(g.state), held, out.age(g.created_at),
                  out.esc(g.id))
    return t


def _show(inv: Invocation, g: pb.GroupSnapshot, names: dict[str, str]) -> None:
    if inv.json:
        out.print_json(out.message_to_dict(g))
        return
    con = out.console()
    con.print(_groups_table([g]))
    if g.message:
        con.print(f"message: {out.esc(g.message)}")
    if g.snapshots:
        con.print(_snapshots_table(list(g.snapshots), names))


@group.command("create")
@click.argument("name", metavar="GROUPNAME")
@click.argument("volume_refs", metavar="VOLUME...", nargs=-1, required=True)
@admin_options
def group_create(inv: Invocation, name: str, volume_refs: tuple[str, ...]) -> None:
    """Snapshot every VOLUME at one instant as group GROUPNAME (members are GROUPNAME.001, ...).

    The volumes' writes are held (hosts see a short pause, no error) while their replicas are
    snapshotted."""
    with inv.client() as c:
        g = c.volumes.CreateGroupSnapshot(pb.CreateGroupSnapshotRequest(name=name, volume_refs=list(volume_refs)))
        names = _volume_names(c) if not inv.json else {}
    _show(inv, g, names)


@group.command("list")
@admin_options
def group_list(inv: Invocation) -> None:
    """List group snapshots."""
    with inv.client() as c:
        groups = list(paginate(c.volumes.ListGroupSnapshots, pb.ListGroupSnapshotsRequest(), "group_snapshots"))
    if inv.json:
        out.print_json([out.message_to_dict(g) for g in groups])
    elif not groups:
        click.echo("No group snapshots.")
    else:
        out.console().print(_groups_table(groups))


@group.command("get")
@click.argument("name", metavar="GROUPNAME")
@admin_options
def group_get(inv: Invocation, name: str) -> None:
    """Show group snapshot GROUPNAME with its member snapshots."""
    with inv.client() as c:
        g = c.volumes.GetGroupSnapshot(pb.GetGroupSnapshotRequest(ref=name))
        names = _volume_names(c) if not inv.json else {}
    _show(inv, g, names)


@group.command("delete")
@click.argument("name", metavar="GROUPNAME")
@admin_options
def group_delete(inv: Invocation, name: str) -> None:
    """Delete group snapshot GROUPNAME and its member snapshots."""
    with inv.client() as c:
        reply = c.volumes.DeleteGroupSnapshot(pb.DeleteGroupSnapshotRequest(ref=name))
    report_deleted(inv, "group snapshot", name, reply.existed)
