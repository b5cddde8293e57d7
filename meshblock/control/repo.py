"""Typed access to the state store: records in, records out, revisions checked on write."""

from __future__ import annotations

from typing import TYPE_CHECKING, Sequence, TypeVar

from ..model.records import Record
from ..store.base import Check, Delete, Put, StateStore

if TYPE_CHECKING:
    from .view import ClusterView

R = TypeVar("R", bound=Record)


class Repo:
    def __init__(self, store: StateStore, view: "ClusterView | None" = None):
        self.store = store
        # when set, a commit returns once the view holds it: what this process writes, it reads back
        self.view = view

    async def get(self, cls: type[R], id: str) -> R | None:
        item = await self.store.get(cls.KIND, id)
        return None if item is None else cls.from_data(item.id, item.data, item.revision)

    async def by_name(self, cls: type[R], name: str) -> R | None:
        item = await self.store.get_by_name(cls.KIND, name)
        return None if item is None else cls.from_data(item.id, item.data, item.revision)

    async def list(self, cls: type[R], *, start_after: str | None = None, limit: int | None = None,
                   index: str = "id") -> list[R]:
        items = await self.store.list(cls.KIND, start_after=start_after, limit=limit, index=index)
        return [cls.from_data(i.id, i.data, i.revision) for i in items]

    async def commit(self, put: Sequence[Record] = (), delete: Sequence[Record] = (),
                     check: Sequence[Record] = (), create: Sequence[Record] = ()) -> None:
        """Write records atomically; each must still be at the revision it was read at
        (``create``: must not exist yet). Raises store.Conflict / NameTaken otherwise."""
        ops: list[Put | Delete | Check] = []
        for r in create:
            ops.append(Put(r.KIND, r.id, r.to_data(), name=r.name_key, expect=0))
        for r in put:
            ops.append(Put(r.KIND, r.id, r.to_data(), name=r.name_key, expect=r.revision))
        for r in delete:
            ops.append(Delete(r.KIND, r.id, expect=r.revision or None))
        for r in check:
            ops.append(Check(r.KIND, r.id, expect=r.revision))
        rev, revs = await self.store.commit_revision(ops)
        view = self.view
        if view is not None and view.ready.is_set() and any(
                not isinstance(op, Check) and op.kind in view.kinds for op in ops):
            await view.caught_up(rev)
        for r in list(create) + list(put):
            r.revision = revs.get((r.KIND, r.id), r.revision)
