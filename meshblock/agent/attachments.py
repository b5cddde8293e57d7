"""Remote NVMe/TCP namespaces attached as local bdevs through SPDK's bdev_nvme initiator."""

from __future__ import annotations

import logging
import re
from dataclasses import dataclass, field

from ..errors import AlreadyExists, InvalidArgument, Unavailable
from ..spdk import SpdkError, SpdkNotFound, SpdkRpc, SpdkRpcError
from .keyring import LINK_KEY_PREFIX, Keyring

log = logging.getLogger(__name__)

_ID_RE = re.compile(r"^[A-Za-z0-9][A-Za-z0-9_.-]{0,62}$")

# Remote replicas must fail I/O quickly when their node goes away (so a raid1 above them
# degrades instead of hanging), while the initiator keeps reconnecting for a while.
RECONNECT_DELAY_SEC = 1
FAST_IO_FAIL_TIMEOUT_SEC = 2
CTRLR_LOSS_TIMEOUT_SEC = 30


@dataclass(frozen=True)
class AttachSpec:
    attachment_id: str
    subnqn: str
    address: str
    port: int
    host_nqn: str
    dhchap_key: str = field(default="", repr=False)   # DHHC-1 secret the host proves ("": none)

    @property
    def controller(self) -> str:
        return "att-" + self.attachment_id


@dataclass
class AttachState:
    spec: AttachSpec
    bdev_names: list[str]
    size_bytes: int
    connected: bool


def check_attachment_id(value: str) -> str:
    if not _ID_RE.match(value or ""):
        raise InvalidArgument("attachment_id", "1-63 characters of letters, digits, '_', '.', '-'")
    return value


class Attacher:
    def __init__(self, rpc: SpdkRpc, keyring: Keyring | None = None):
        self.rpc = rpc
        self.keyring = keyring

    async def controllers(self) -> dict[str, dict]:
        return {c["name"]: c for c in await self.rpc.bdev_nvme_get_controllers()}

    async def state(self, spec: AttachSpec, ctrl: dict | None = None) -> AttachState | None:
        if ctrl is None:
            try:
                found = await self.rpc.bdev_nvme_get_controllers(spec.controller)
            except SpdkNotFound:
                return None
            if not found:
                return None
            ctrl = found[0]
        names, size = [], 0
        for b in await self.rpc.bdev_get_bdevs():
            if b["name"].startswith(spec.controller + "n"):
                names.append(b["name"])
                size += int(b["num_blocks"]) * int(b["block_size"])
        connected = all(c.get("state", "enabled") == "enabled" for c in ctrl.get("ctrlrs", []))
        return AttachState(spec=spec, bdev_names=sorted(names), size_bytes=size, connected=connected)

    @staticmethod
    def trid_matches(ctrl: dict, spec: AttachSpec) -> bool:
        for c in ctrl.get("ctrlrs", []):
            t = c.get("trid", {})
            if (t.get("subnqn") == spec.subnqn and t.get("traddr") == spec.address
                    and str(t.get("trsvcid")) == str(spec.port)):
                return True
        return False

    async def ensure(self, spec: AttachSpec) -> AttachState:
        ctrls = await self.controllers()
        ctrl = ctrls.get(spec.controller)
        if ctrl is not None:
            if not self.trid_matches(ctrl, spec):
                raise AlreadyExists(f"attachment {spec.attachment_id} exists for a different target")
            state = await self.state(spec, ctrl)
            assert state is not None
            return state
        key = None
        if spec.dhchap_key:
            if self.keyring is None:
                raise Unavailable("this target has no keyring for DH-HMAC-CHAP secrets")
            key = await self.keyring.ensure(spec.dhchap_key, LINK_KEY_PREFIX)
        try:
            await self.rpc.bdev_nvme_attach_controller(
                spec.controller, spec.address, spec.port, spec.subnqn, hostnqn=spec.host_nqn,
                ctrlr_loss_timeout_sec=CTRLR_LOSS_TIMEOUT_SEC, reconnect_delay_sec=RECONNECT_DELAY_SEC,
                fast_io_fail_timeout_sec=FAST_IO_FAIL_TIMEOUT_SEC, dhchap_key=key, timeout=60.0)
        except SpdkRpcError as e:
            raise Unavailable(f"cannot attach {spec.subnqn} at {spec.address}:{spec.port} as {spec.host_nqn}: "
                              f"{e.message}") from e
        log.info("attached attachment_id=%s subnqn=%s addr=%s:%d", spec.attachment_id, spec.subnqn,
                 spec.address, spec.port)
        state = await self.state(spec)
        if state is None:
            raise Unavailable(f"attachment {spec.attachment_id} vanished right after attaching")
        return state

    async def remove(self, attachment_id: str) -> bool:
        try:
            await self.rpc.bdev_nvme_detach_controller("att-" + attachment_id)
        except SpdkNotFound:
            return False
        except SpdkError as e:
            if "not found" in str(e).lower():
                return False
            raise
        log.info("detached attachment_id=%s", attachment_id)
        return True
