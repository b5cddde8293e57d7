"""The shared directory through which fake targets find each other's NVMe/TCP listeners.

A fake target cannot speak NVMe/TCP, so besides really binding its listen addresses it
publishes, per listen address, ``$FAKESPDK_REGISTRY/<traddr>_<trsvcid>.json``: the owner's PID
and RPC socket and, for every subsystem listening there, its NQN, host access list and
namespaces (size, block size, UUID/NGUID).  A host (``bdev_nvme_attach_controller`` in another
fake) looks the address up and then "connects" through the owner's RPC socket, where the
target decides with its live state (see :mod:`.nvme`).  Files are written atomically
(``os.replace``) and removed on clean exit; an entry whose owner died is ignored.
"""

from __future__ import annotations

import json
import os
import tempfile
from pathlib import Path
from typing import Any


def registry_dir() -> Path:
    d = os.environ.get("FAKESPDK_REGISTRY") or os.path.join(tempfile.gettempdir(), "fakespdk-registry")
    return Path(d)


def pid_alive(pid: int) -> bool:
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except PermissionError:
        return True
    try:
        with open(f"/proc/{pid}/stat") as f:
            return f.read().rsplit(")", 1)[1].split()[0] != "Z"
    except (OSError, IndexError):
        return True


def _write(path: Path, doc: Any) -> None:
    path.parent.mkdir(parents=True, exist_ok=True)
    tmp = path.with_name(f".{path.name}.{os.getpid()}.tmp")
    tmp.write_text(json.dumps(doc, indent=1, sort_keys=True))
    os.replace(tmp, path)


def _address_file(traddr: str, trsvcid: str) -> Path:
    return registry_dir() / f"{traddr}_{trsvcid}.json"


class Registry:
    def __init__(self) -> None:
        self.published: dict[Path, str] = {}
        self.pid = os.getpid()

    # --- target side ---
    def publish(self, addresses: dict[tuple[str, str], dict[str, Any]]) -> None:
        """Make the registry show exactly ``addresses`` for this process."""
        want: dict[Path, str] = {}
        for (traddr, trsvcid), doc in addresses.items():
            want[_address_file(traddr, trsvcid)] = json.dumps(doc, sort_keys=True)
        for path in list(self.published):
            if path not in want:
                self._unlink_own(path)
                del self.published[path]
        for path, text in want.items():
            if self.published.get(path) != text:
                try:
                    _write(path, json.loads(text))
                except OSError:
                    continue
                self.published[path] = text

    def _unlink_own(self, path: Path) -> None:
        try:
            doc = json.loads(path.read_text())
            if doc.get("pid") == self.pid:
                path.unlink()
        except (OSError, ValueError):
            pass

    def cleanup(self) -> None:
        for path in list(self.published):
            self._unlink_own(path)
        self.published.clear()

    # --- host side ---
    def lookup(self, traddr: str, trsvcid: str) -> dict[str, Any] | None:
        """The live target listening on ``traddr:trsvcid`` (or on the wildcard address), if any."""
        wildcard = "::" if ":" in traddr else "0.0.0.0"
        for addr in (traddr, wildcard):
            try:
                doc = json.loads(_address_file(addr, trsvcid).read_text())
            except (OSError, ValueError):
                continue
            if isinstance(doc, dict) and pid_alive(int(doc.get("pid", -1))):
                return doc
        return None
