"""Helper processes for the state store tests (run as a script, never collected).

    _proc.py commit-one URL KIND ID          one Put, then print "done"
    _proc.py increment URL KIND ID N         N read-modify-write increments with expect=revision
    _proc.py crash-writer URL                commit groups until killed; print each acknowledged group
    _proc.py candidate URL ID [TTL]          campaign for leadership; print "leader ID <t>" when it leads
"""

from __future__ import annotations

import asyncio
import sys
import time

from meshblock.store import Conflict, Put, open_leadership, open_store

GROUP = ("a", "b", "c")


def say(*words: object) -> None:
    print(*words, flush=True)


async def commit_one(url: str, kind: str, id: str) -> None:
    store = open_store(url)
    await store.commit([Put(kind, id, {"from": "child"})])
    await store.close()
    say("done")


async def increment(store, kind: str, id: str, n: int) -> int:
    conflicts = 0
    done = 0
    while done < n:
        item = await store.get(kind, id)
        value = item.data["n"] if item else 0
        try:
            await store.commit([Put(kind, id, {"n": value + 1}, expect=item.revision if item else 0)])
            done += 1
        except Conflict:
            conflicts += 1
    return conflicts


async def increment_main(url: str, kind: str, id: str, n: int) -> None:
    store = open_store(url)
    say("ready")
    conflicts = await increment(store, kind, id, n)
    await store.close()
    say("done", conflicts)


async def crash_writer(url: str) -> None:
    """Each commit writes a group of three items (one named) and moves a counter, atomically."""
    store = open_store(url)
    counter = await store.get("counter", "c")
    i = counter.data["group"] + 1 if counter else 0
    while True:
        ops = [Put("crash", f"{i:06d}-{part}", {"group": i, "pad": "x" * 512},
                   name=f"group-{i:06d}" if part == "a" else None) for part in GROUP]
        ops.append(Put("counter", "c", {"group": i}))
        await store.commit(ops)
        say(i)          # acknowledged: the commit returned
        i += 1


async def candidate(url: str, id: str, ttl: float) -> None:
    lead = open_leadership(url, id, ttl=ttl)
    say("campaigning", id)
    await lead.campaign()
    say("leader", id, time.time())
    await lead.lost.wait()
    say("lost", id)


def main(argv: list[str]) -> None:
    cmd, args = argv[0], argv[1:]
    if cmd == "commit-one":
        asyncio.run(commit_one(*args))
    elif cmd == "increment":
        asyncio.run(increment_main(args[0], args[1], args[2], int(args[3])))
    elif cmd == "crash-writer":
        asyncio.run(crash_writer(args[0]))
    elif cmd == "candidate":
        asyncio.run(candidate(args[0], args[1], float(args[2]) if len(args) > 2 else 3.0))
    else:
        raise SystemExit(f"unknown command {cmd!r}")


if __name__ == "__main__":
    main(sys.argv[1:])
