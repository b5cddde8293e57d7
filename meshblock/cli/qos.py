"""`meshblock volume set-qos`: change a volume's QoS limits online."""

from __future__ import annotations

import click

from ..proto.meshblock.v1 import admin_pb2 as pb
from . import output as out
from .admin import Invocation, admin_options, volume
from .types import qos_given, qos_options


@volume.command("set-qos")
@click.argument("name")
@qos_options
@admin_options
def volume_set_qos(inv: Invocation, name: str, **limits: int | None) -> None:
    """Change the QoS limits of volume NAME online (limits not given stay; 0 lifts one).

    The volume's head enforces them (SPDK bdev QoS), and its standby heads too, so they hold
    across a head failover."""
    given = qos_given(**limits)
    if not given:
        raise click.UsageError("give at least one of --max-iops, --max-mbps, --max-read-mbps, --max-write-mbps")
    with inv.client() as c:
        v = c.volumes.SetVolumeQos(pb.SetVolumeQosRequest(ref=name, **given))
    inv.report(v, f"volume {v.name or name} QoS: {out.qos(v.qos)}")
