"""click parameter types shared by the commands."""

from __future__ import annotations

from typing import Any, Callable

import click

from ..units import parse_size


class Size(click.ParamType):
    """A size with human units: 10GiB, 512MiB, 1.5TiB, 4096 (bytes)."""

    name = "size"

    def convert(self, value, param, ctx):  # type: ignore[override]
        if isinstance(value, int):
            return value
        try:
            return parse_size(value)
        except ValueError as e:
            self.fail(str(e), param, ctx)


SIZE = Size()


def parse_labels(ctx: click.Context, param: click.Parameter, items: tuple[str, ...]) -> dict[str, str]:
    """Click callback: repeated KEY=VALUE options into a dict."""
    labels: dict[str, str] = {}
    for item in items:
        k, sep, v = item.partition("=")
        if not sep or not k.strip():
            raise click.BadParameter(f"{item!r} is not key=value", ctx=ctx, param=param)
        labels[k.strip()] = v.strip()
    return labels


# QoS limits (meshblock/qos.py): a volume's at creation, changed with `volume set-qos`
QOS_FLAGS = {"max_iops": "--max-iops", "max_mbps": "--max-mbps", "max_read_mbps": "--max-read-mbps",
             "max_write_mbps": "--max-write-mbps"}
_QOS_HELP = {"max_iops": "reads and writes per second, in steps of 1000",
             "max_mbps": "reads and writes, MiB/s", "max_read_mbps": "reads, MiB/s",
             "max_write_mbps": "writes, MiB/s"}


def qos_options(fn: Callable[..., Any]) -> Callable[..., Any]:
    """--max-iops, --max-mbps, --max-read-mbps, --max-write-mbps (None when not given; 0 = no limit)."""
    for name, flag in reversed(QOS_FLAGS.items()):
        fn = click.option(flag, name, type=click.IntRange(min=0), default=None, metavar="N",
                          help=f"QoS limit enforced on the volume's head: {_QOS_HELP[name]} (0: no limit).")(fn)
    return fn


def qos_given(**limits: int | None) -> dict[str, int]:
    """The limits given on the command line, checked against SPDK's rules before any call."""
    from ..qos import QosLimits, problems

    given = {k: v for k, v in limits.items() if v is not None}
    for name, problem in problems(QosLimits(**given)):
        raise click.BadParameter(problem, param_hint=QOS_FLAGS[name])
    return given
