"""Command line for the test bed.

    python -m meshblock.testbed info              # cache, image key, what this host lacks
    python -m meshblock.testbed build [--force]   # build (or rebuild) the cached image
    python -m meshblock.testbed run [-g a,b] [-k backports] [--hold] -- CMD...
                                                  # boot guests, run CMD in the first one
"""

from __future__ import annotations

import argparse
import json
import sys
import time

from .bed import Testbed
from .errors import TestbedError
from .image import (
    DEFAULT_KERNEL,
    KERNELS,
    PACKAGES,
    default_cache_dir,
    ensure_image,
    find_mirror,
    host_problems,
    image_key,
    safe_rmtree,
)


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(prog="python -m meshblock.testbed")
    sub = ap.add_subparsers(dest="cmd", required=True)
    sub.add_parser("info")
    b = sub.add_parser("build")
    b.add_argument("--force", action="store_true", help="delete the cached image first")
    r = sub.add_parser("run")
    r.add_argument("-g", "--guests", default="a", help="comma-separated guest names (default: a)")
    r.add_argument("-k", "--kernel", default=DEFAULT_KERNEL, choices=sorted(KERNELS),
                   help=f"which of the image's kernels the guests boot (default: {DEFAULT_KERNEL})")
    r.add_argument("--hold", action="store_true", help="keep the guests up until interrupted")
    r.add_argument("command", nargs=argparse.REMAINDER)
    args = ap.parse_args(argv)

    try:
        if args.cmd == "info":
            key = image_key()
            d = default_cache_dir() / key
            print(f"cache dir:  {default_cache_dir()}")
            print(f"image key:  {key} ({'built' if (d / 'meta.json').exists() else 'not built'})")
            print(f"packages:   {' '.join(PACKAGES)}")
            try:
                print(f"mirror:     {find_mirror()}")
            except TestbedError as e:
                print(f"mirror:     {e}")
            problems = host_problems()
            print("host:       " + ("; ".join(problems) if problems else "ok"))
            if (d / "meta.json").exists():
                print(json.dumps(json.loads((d / "meta.json").read_text()), indent=2))
            return 0
        if args.cmd == "build":
            d = default_cache_dir() / image_key()
            if args.force and d.exists():
                safe_rmtree(d)
            t0 = time.monotonic()
            image = ensure_image()
            kernels = ", ".join(f"{k.name} {k.version}" for k in image.kernels.values())
            print(f"{image.dir} (kernels: {kernels}) in {time.monotonic() - t0:.1f}s")
            return 0
        command = args.command[1:] if args.command[:1] == ["--"] else args.command
        t0 = time.monotonic()
        with Testbed() as tb:
            names = [n for n in args.guests.split(",") if n]
            guests = tb.guests(names, kernel=args.kernel)
            print(f"booted {', '.join(names)} in {time.monotonic() - t0:.1f}s", file=sys.stderr)
            print(tb.describe(), file=sys.stderr)
            rc = 0
            if command:
                res = guests[0].run(command if len(command) > 1 else command[0], timeout=3600)
                sys.stdout.write(res.stdout)
                sys.stderr.write(res.stderr)
                rc = 124 if res.timed_out else res.rc
            if args.hold:
                print(f"holding; enter the network with: {' '.join(tb.netns_argv())} ...  (Ctrl-C ends)",
                      file=sys.stderr)
                try:
                    while True:
                        time.sleep(3600)
                except KeyboardInterrupt:
                    pass
            return rc
    except TestbedError as e:
        print(f"testbed: {e}", file=sys.stderr)
        return 2


if __name__ == "__main__":
    sys.exit(main())
