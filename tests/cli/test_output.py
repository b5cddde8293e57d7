"""Rendering helpers and parameter types of the admin commands."""

from __future__ import annotations

import click
import pytest

from meshblock.cli import output as out
from meshblock.cli.admin import DURATION, SIZE
from meshblock.proto.meshblock.v1 import admin_pb2 as pb


def test_message_to_dict_keeps_every_field_and_integer_sizes():
    v = pb.Volume(name="db", size_bytes=1 << 40, labels={"b": "2", "a": "1"},
                  replica_status=[pb.ReplicaStatus(node_name="n1", rebuild_eta_seconds=7)])
    d = out.message_to_dict(v)
    assert d["size_bytes"] == 1 << 40 and isinstance(d["size_bytes"], int)
    assert d["labels"] == {"a": "1", "b": "2"}
    assert d["hosts"] == [] and d["state"] == "" and d["created_at"] == 0.0
    assert d["replica_status"][0]["rebuild_eta_seconds"] == 7
    assert set(d) == {f.name for f in pb.Volume.DESCRIPTOR.fields}
    n = out.message_to_dict(pb.Node(name="n"))
    assert n["drain"] == {"replicas_total": 0, "replicas_moved": 0, "done": False, "message": ""}


@pytest.mark.parametrize("text, seconds", [("120s", 120), ("2m", 120), ("1h", 3600), ("500ms", 0.5),
                                           ("90", 90), ("1.5s", 1.5)])
def test_duration(text, seconds):
    assert DURATION.convert(text, None, None) == seconds


def test_bad_duration_and_size():
    with pytest.raises(click.BadParameter):
        DURATION.convert("two minutes", None, None)
    with pytest.raises(click.BadParameter):
        SIZE.convert("10 gallons", None, None)
    assert SIZE.convert("10GiB", None, None) == 10 << 30


@pytest.mark.parametrize("seconds, text", [(0, "0s"), (45, "45s"), (65, "1m05s"), (3720, "1h02m"),
                                           (90000, "1d01h"), (0.25, "0.2s")])
def test_human_duration(seconds, text):
    assert out.duration(seconds) == text


def test_markup_in_user_data_is_not_interpreted():
    assert out.labels({"k": "[red]x"}) == "k=\\[red]x"
