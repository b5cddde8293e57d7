"""click parameter types shared by the commands."""

from __future__ import annotations

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
