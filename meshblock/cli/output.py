"""Rendering for the CLI: JSON for scripts, rich tables for people.

JSON keeps the protobuf field names and every field (defaults included) so its
shape does not depend on which values happen to be set; sizes stay integers
(bytes).  Tables show human units.
"""

from __future__ import annotations

import json
import time
from datetime import datetime, timezone
from typing import Any, Iterable

import click
from google.protobuf.descriptor import FieldDescriptor
from google.protobuf.message import Message
from rich import box
from rich.console import Console
from rich.markup import escape
from rich.table import Table

from ..units import format_size

_PIPE_WIDTH = 200


def _value(field: FieldDescriptor, value: Any) -> Any:
    if field.type == FieldDescriptor.TYPE_MESSAGE:
        return message_to_dict(value)
    if field.type == FieldDescriptor.TYPE_BYTES:
        return value.hex()
    if field.type == FieldDescriptor.TYPE_ENUM:
        known = field.enum_type.values_by_number
        return known[value].name if value in known else value
    return value


def message_to_dict(msg: Message) -> dict[str, Any]:
    """Every field of ``msg`` by its proto name, but optional scalars that are not set; 64-bit integers
    stay numbers."""
    out: dict[str, Any] = {}
    for field in msg.DESCRIPTOR.fields:
        if field.has_presence and field.message_type is None and not msg.HasField(field.name):
            continue
        value = getattr(msg, field.name)
        if field.message_type is not None and field.message_type.GetOptions().map_entry:
            vfield = field.message_type.fields_by_name["value"]
            out[field.name] = {str(k): _value(vfield, value[k]) for k in sorted(value)}
        elif field.is_repeated:
            out[field.name] = [_value(field, v) for v in value]
        else:
            out[field.name] = _value(field, value)
    return out


def print_json(obj: Any) -> None:
    click.echo(json.dumps(obj, indent=2))


def console(stderr: bool = False) -> Console:
    """A console on stdout (or stderr); wide enough not to crush tables when piped."""
    c = Console(stderr=stderr, highlight=False)
    if not c.is_terminal:
        c = Console(stderr=stderr, highlight=False, width=_PIPE_WIDTH)
    return c


def esc(text: Any) -> str:
    """User data shown in a table cell (never read as rich markup)."""
    return escape(str(text))


def table(*columns: str, title: str | None = None) -> Table:
    t = Table(*columns, title=title, box=box.SIMPLE_HEAD, title_justify="left", pad_edge=False,
              show_edge=False)
    return t


def properties(rows: Iterable[tuple[str, Any]]) -> Table:
    """A two-column key/value view."""
    t = Table.grid(padding=(0, 2))
    t.add_column(style="bold", no_wrap=True)
    t.add_column()
    for k, v in rows:
        t.add_row(k, v)
    return t


def size(n: int) -> str:
    return format_size(int(n))


def duration(seconds: float) -> str:
    """1h02m, 3m05s, 45s, 0.5s."""
    if 0 < seconds < 1:
        return f"{seconds:.1f}s"
    s = max(0, int(round(seconds)))
    if s >= 86400:
        return f"{s // 86400}d{(s % 86400) // 3600:02d}h"
    if s >= 3600:
        return f"{s // 3600}h{(s % 3600) // 60:02d}m"
    if s >= 60:
        return f"{s // 60}m{s % 60:02d}s"
    return f"{s}s"


def age(timestamp: float, now: float | None = None) -> str:
    if not timestamp:
        return "-"
    return duration(int((now if now is not None else time.time()) - timestamp))


def timestamp(ts: float) -> str:
    if not ts:
        return "-"
    return datetime.fromtimestamp(ts, tz=timezone.utc).strftime("%Y-%m-%d %H:%M:%S UTC")


def labels(d: Any) -> str:
    return esc(",".join(f"{k}={d[k]}" for k in sorted(d))) or "-"


STATE_STYLE = {
    "available": "green", "online": "green", "up": "green", "ready": "green",
    "degraded": "yellow", "rebuilding": "yellow", "creating": "cyan", "deleting": "magenta",
    "faulted": "red", "offline": "red", "down": "red",
    "optimized": "green", "non_optimized": "yellow", "inaccessible": "red",
}


def qos(q: Any) -> str:
    """A volume's QoS limits (admin QosLimits) in one line."""
    parts = [f"{q.max_iops} IOPS" if q.max_iops else "", f"{q.max_mbps} MiB/s" if q.max_mbps else "",
             f"read {q.max_read_mbps} MiB/s" if q.max_read_mbps else "",
             f"write {q.max_write_mbps} MiB/s" if q.max_write_mbps else ""]
    return ", ".join(p for p in parts if p) or "no limits"


def state(s: str) -> str:
    style = STATE_STYLE.get(s)
    return f"[{style}]{s}[/{style}]" if style and s else (esc(s) or "-")
