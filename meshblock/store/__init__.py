"""The controller's state store: one asyncio interface (:mod:`.base`), two engines
(:mod:`.sqlite`, embedded default; :mod:`.etcd`, for highly available controllers)."""

from meshblock.store.base import (
    DEFAULT_LEADER_TTL,
    Change,
    Check,
    Conflict,
    Delete,
    HistoryLost,
    Item,
    Leadership,
    NameTaken,
    Put,
    StateStore,
    StoreError,
    StoreUnavailable,
    open_leadership,
    open_store,
)

__all__ = [
    "DEFAULT_LEADER_TTL",
    "Change",
    "Check",
    "Conflict",
    "Delete",
    "HistoryLost",
    "Item",
    "Leadership",
    "NameTaken",
    "Put",
    "StateStore",
    "StoreError",
    "StoreUnavailable",
    "open_leadership",
    "open_store",
]
