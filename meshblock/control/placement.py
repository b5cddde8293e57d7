"""Choosing nodes for a volume's replicas.

Rules, in order: only nodes that are up, not cordoned and not draining; never
two replicas of a volume on one node; where ``spread`` names a node label
(zone, rack), never two replicas in one value of it (a node without the label
is its own domain); never two block sizes in one volume (a raid's members share one: replicas
go where the volume's other replicas' pool block size is, shards to 512-byte pools); the new
replica must fit under the pool's overcommit limit
(thin provisioning: provisioned bytes may exceed the pool up to that ratio);
among the nodes that qualify, the least provisioned (relative to size) first,
so load spreads.  When no choice exists the error says why, per node.
"""

from __future__ import annotations

from dataclasses import dataclass, field

from ..errors import ResourceExhausted


@dataclass(frozen=True)
class Candidate:
    node_id: str
    name: str
    up: bool
    schedulable: bool          # not cordoned, not draining
    labels: dict[str, str]
    total_bytes: int
    provisioned_bytes: int     # sum of replica sizes placed there (desired state)
    block_size: int = 0        # of the node's pool (0: not reported, taken to fit)


class PlacementError(ResourceExhausted):
    def __init__(self, message: str, reasons: dict[str, str]):
        super().__init__(message)
        self.reasons = reasons


@dataclass
class Placement:
    node_ids: list[str]
    reasons: dict[str, str] = field(default_factory=dict)


def domain(c: Candidate, spread: str) -> str:
    if not spread:
        return c.node_id
    return c.labels.get(spread) or f"node:{c.node_id}"


def place(size_bytes: int, count: int, candidates: list[Candidate], *, spread: str = "",
          overcommit: float = 4.0, exclude_nodes: set[str] | None = None,
          taken_domains: set[str] | None = None, block_size: int = 0) -> Placement:
    """Pick ``count`` nodes for new replicas of ``size_bytes``.

    ``exclude_nodes`` and ``taken_domains`` describe replicas the volume already has
    (when replacing one, or raising the replica count); ``block_size`` is the pool block size they
    need (0: any, but one for all of them).
    """
    if not block_size:
        sizes = sorted({c.block_size for c in candidates if c.block_size},
                       key=lambda b: (-sum(1 for c in candidates if c.block_size == b), b))
        err: PlacementError | None = None
        for b in sizes or [0]:
            try:
                return _place(size_bytes, count, candidates, spread, overcommit, exclude_nodes, taken_domains, b)
            except PlacementError as e:
                err = err or e
        assert err is not None
        raise err
    return _place(size_bytes, count, candidates, spread, overcommit, exclude_nodes, taken_domains, block_size)


def _place(size_bytes: int, count: int, candidates: list[Candidate], spread: str, overcommit: float,
           exclude_nodes: set[str] | None, taken_domains: set[str] | None, block_size: int) -> Placement:
    exclude = set(exclude_nodes or ())
    taken = set(taken_domains or ())
    reasons: dict[str, str] = {}
    fit: list[Candidate] = []
    for c in sorted(candidates, key=lambda c: c.name):
        if not c.up:
            reasons[c.name] = "down"
        elif not c.schedulable:
            reasons[c.name] = "cordoned or draining"
        elif c.node_id in exclude:
            reasons[c.name] = "already holds a replica of this volume"
        elif c.total_bytes <= 0:
            reasons[c.name] = "no pool capacity reported"
        elif block_size and c.block_size and c.block_size != block_size:
            reasons[c.name] = f"its pool has {c.block_size}-byte blocks; this volume needs {block_size}"
        elif c.provisioned_bytes + size_bytes > c.total_bytes * overcommit:
            reasons[c.name] = (f"would exceed the overcommit limit ({c.provisioned_bytes + size_bytes} of "
                               f"{int(c.total_bytes * overcommit)} bytes provisioned)")
        elif domain(c, spread) in taken:
            reasons[c.name] = f"{spread or 'node'} {domain(c, spread)} already holds a replica of this volume"
        else:
            fit.append(c)
    fit.sort(key=lambda c: ((c.provisioned_bytes + size_bytes) / c.total_bytes, c.name))
    chosen: list[str] = []
    used = set(taken)
    for c in fit:
        if len(chosen) == count:
            break
        d = domain(c, spread)
        if d in used:
            reasons.setdefault(c.name, f"{spread or 'node'} {d} is used by another replica of this volume")
            continue
        chosen.append(c.node_id)
        used.add(d)
    if len(chosen) < count:
        detail = "; ".join(f"{n}: {r}" for n, r in sorted(reasons.items())) or "no nodes registered"
        what = f"distinct {spread} values" if spread else "distinct nodes"
        raise PlacementError(f"cannot place {count} replica(s) of {size_bytes} bytes on {what}: "
                             f"{len(chosen)} possible ({detail})", reasons)
    return Placement(chosen, reasons)
