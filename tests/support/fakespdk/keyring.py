"""The file keyring (module/keyring/file): named keys read from files their owner alone can read.

SPDK checks the file when the key is added (it must exist and have no group or other permission
bits) and reads it each time the key is used; this fake does the same. A removed key that a host
entry still holds stays usable by it (SPDK counts references) and is listed as removed.
"""

from __future__ import annotations

import os
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any

from .app import DECODE_INVALID, E, F, RpcError, decode, errno_error, rpc

if TYPE_CHECKING:
    from .target import Target


@dataclass(eq=False)
class Key:
    name: str
    path: str
    removed: bool = False

    def read(self) -> str | None:
        try:
            with open(self.path) as f:
                return f.read()
        except OSError:
            return None


class Keyring:
    def __init__(self) -> None:
        self.keys: dict[str, Key] = {}

    def get(self, name: str) -> Key | None:
        k = self.keys.get(name)
        return None if k is None or k.removed else k


@rpc("keyring_file_add_key")
def keyring_file_add_key(t: Target, params: Any) -> bool:
    p = decode(params, {"name": F("string", True), "path": F("string", True)}, DECODE_INVALID)
    path = p["path"]
    if not path.startswith("/"):
        raise errno_error(E.EPERM)
    try:
        st = os.stat(path)
    except OSError as e:
        raise errno_error(e.errno or E.ENOENT) from None
    if st.st_mode & 0o077:
        raise errno_error(E.EPERM)
    if t.keyring.get(p["name"]) is not None:
        raise errno_error(E.EEXIST)
    t.keyring.keys[p["name"]] = Key(p["name"], path)
    return True


@rpc("keyring_file_remove_key")
def keyring_file_remove_key(t: Target, params: Any) -> bool:
    p = decode(params, {"name": F("string", True)}, DECODE_INVALID)
    k = t.keyring.get(p["name"])
    if k is None:
        raise errno_error(E.ENOKEY)
    k.removed = True
    if not t.nvmf.key_in_use(k):
        del t.keyring.keys[k.name]
    return True


@rpc("keyring_get_keys")
def keyring_get_keys(t: Target, params: Any) -> list[dict[str, Any]]:
    if params is not None and params != {}:
        raise RpcError(*DECODE_INVALID)
    return [{"name": k.name, "module": "keyring_file", "removed": k.removed, "probed": False,
             "refcnt": 1 + t.nvmf.key_in_use(k), "path": k.path} for k in t.keyring.keys.values()]
