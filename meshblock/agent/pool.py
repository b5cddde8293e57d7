"""The node's storage pool: one base bdev (AIO on a block device or a file) holding an lvstore."""

from __future__ import annotations

import logging
from dataclasses import dataclass
from pathlib import Path

from ..errors import FailedPrecondition
from ..spdk import SpdkNotFound, SpdkRpc

log = logging.getLogger(__name__)

BASE_BDEV = "meshblock-base"


@dataclass
class PoolInfo:
    name: str
    uuid: str
    total_bytes: int
    free_bytes: int
    cluster_size: int
    block_size: int


class Pool:
    def __init__(self, rpc: SpdkRpc, device: str, lvs_name: str, *, size_bytes: int, block_size: int,
                 cluster_size: int):
        self.rpc = rpc
        self.device = device
        self.lvs_name = lvs_name
        self.size_bytes = size_bytes
        self.block_size = block_size
        self.cluster_size = cluster_size
        self.uuid = ""
        self.ready = False
        # the block size of the lvstore and so of every lvol in it, as made: a pool made with another
        # block_size keeps its own (0 until the pool is loaded)
        self.lvol_block_size = 0

    def _prepare_device(self) -> None:
        path = Path(self.device)
        if path.exists():
            return
        if str(path).startswith("/dev/"):
            raise FailedPrecondition(f"pool device {path} does not exist")
        path.parent.mkdir(parents=True, exist_ok=True)
        with open(path, "wb") as f:  # sparse: blocks are allocated as replicas are written
            f.truncate(self.size_bytes)
        log.info("created sparse pool file %s (%d bytes)", path, self.size_bytes)

    async def ensure(self) -> PoolInfo:
        """Create or load the pool; safe to repeat (after a target restart, say)."""
        self._prepare_device()
        try:
            await self.rpc.bdev_get_bdevs(BASE_BDEV)
        except SpdkNotFound:
            await self.rpc.bdev_aio_create(self.device, BASE_BDEV, block_size=self.block_size)
        # examine loads an lvstore found on the device
        await self.rpc.bdev_wait_for_examine()
        stores = await self.rpc.bdev_lvol_get_lvstores()
        mine = [s for s in stores if s.get("name") == self.lvs_name]
        if not mine:
            other = [s for s in stores if s.get("base_bdev") == BASE_BDEV]
            if other:
                raise FailedPrecondition(
                    f"pool device {self.device} holds lvstore {other[0].get('name')!r}, not "
                    f"{self.lvs_name!r}; refusing to touch it")
            await self.rpc.bdev_lvol_create_lvstore(BASE_BDEV, self.lvs_name, cluster_sz=self.cluster_size)
            log.info("created lvstore %s on %s", self.lvs_name, self.device)
        info = await self.info()
        self.uuid, self.cluster_size = info.uuid, info.cluster_size   # fixed for the life of the lvstore
        self.lvol_block_size = info.block_size
        self.ready = True
        return info

    async def info(self) -> PoolInfo:
        stores = await self.rpc.bdev_lvol_get_lvstores(lvs_name=self.lvs_name)
        s = stores[0]
        cs = int(s["cluster_size"])
        return PoolInfo(name=s["name"], uuid=s["uuid"], total_bytes=int(s["total_data_clusters"]) * cs,
                        free_bytes=int(s["free_clusters"]) * cs, cluster_size=cs,
                        block_size=int(s["block_size"]))

    def round_size(self, size_bytes: int, cluster_size: int | None = None) -> int:
        cs = cluster_size or self.cluster_size
        return -(-size_bytes // cs) * cs


