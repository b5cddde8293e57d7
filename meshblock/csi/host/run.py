"""Running host commands from asyncio."""

from __future__ import annotations

import asyncio
import logging
from dataclasses import dataclass

log = logging.getLogger(__name__)


class CommandFailed(RuntimeError):
    def __init__(self, argv: list[str], rc: int, output: str):
        super().__init__(f"{' '.join(argv)} exited {rc}: {output.strip()[-500:]}")
        self.argv, self.rc, self.output = argv, rc, output


def shown(argv: list[str], hide: tuple[str, ...]) -> list[str]:
    """``argv`` as logs and errors may show it: secrets given on it replaced."""
    out = []
    for a in argv:
        for secret in hide:
            if secret:
                a = a.replace(secret, "<secret>")
        out.append(a)
    return out


@dataclass
class Result:
    rc: int
    stdout: str
    stderr: str


async def run(argv: list[str], *, timeout: float = 120.0, check: bool = True, hide: tuple[str, ...] = ()) -> Result:
    """Run ``argv``; ``hide`` lists secrets on it, which logs and errors never show."""
    proc = await asyncio.create_subprocess_exec(*argv, stdin=asyncio.subprocess.DEVNULL,
                                                stdout=asyncio.subprocess.PIPE, stderr=asyncio.subprocess.PIPE)
    try:
        out, err = await asyncio.wait_for(proc.communicate(), timeout)
    except asyncio.TimeoutError:
        proc.kill()
        await proc.wait()
        raise CommandFailed(shown(argv, hide), -9, f"timed out after {timeout:.0f}s") from None
    res = Result(proc.returncode or 0, out.decode(errors="replace"), err.decode(errors="replace"))
    log.debug("ran %s: rc=%d", " ".join(shown(argv, hide)), res.rc)
    if check and res.rc != 0:
        raise CommandFailed(shown(argv, hide), res.rc, res.stderr or res.stdout)
    return res
