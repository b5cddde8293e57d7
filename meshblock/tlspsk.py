"""TLS pre-shared keys for NVMe/TCP in the NVMe TLS PSK interchange format.

NVMe/TCP Transport Specification, 3.6.1.5 "PSK interchange format":
``NVMeTLSkey-1:<hh>:<base64 of the configured PSK followed by its CRC-32, little-endian>:`` where
``hh`` names the hash the retained PSK is derived with (01: SHA-256 with a 32-byte PSK, 02: SHA-384
with a 48-byte one). ``nvme gen-tls-key`` writes this text; nvme-cli (``--tls-key``), the Linux
kernel's keyring and SPDK's keyring (``nvmf_subsystem_add_host psk``) take it.
"""

from __future__ import annotations

import secrets

from . import keytext
from .dhchap import fingerprint

__all__ = ["InvalidKey", "decode", "encode", "fingerprint", "generate", "key_name"]

PREFIX = "NVMeTLSkey-1"
HASH_LENGTHS = {1: 32, 2: 48}
KEY_NAME_PREFIX = "mb-psk-"


class InvalidKey(ValueError):
    pass


def generate(hash_id: int = 1) -> str:
    """A new random PSK (32 bytes, retained PSK derived with SHA-256 by default)."""
    if hash_id not in HASH_LENGTHS:
        raise ValueError(f"hash id {hash_id}: 1 (SHA-256) or 2 (SHA-384)")
    return encode(secrets.token_bytes(HASH_LENGTHS[hash_id]), hash_id)


def encode(psk: bytes, hash_id: int = 1) -> str:
    if HASH_LENGTHS.get(hash_id) != len(psk):
        raise InvalidKey(f"hash {hash_id:02d} takes a {HASH_LENGTHS.get(hash_id, '32 or 48')}-byte PSK, "
                         f"not {len(psk)} bytes")
    return keytext.encode(PREFIX, hash_id, psk)


def decode(text: str) -> tuple[int, bytes]:
    """The hash id and the PSK of an interchange text; InvalidKey when it is not one."""
    try:
        hash_id, psk = keytext.decode(PREFIX, text, "NVMe TLS PSK")
    except keytext.KeyTextError as e:
        raise InvalidKey(str(e)) from None
    if hash_id not in HASH_LENGTHS:
        raise InvalidKey(f"hash {hash_id:02d}: 01 (SHA-256) or 02 (SHA-384)")
    if len(psk) != HASH_LENGTHS[hash_id]:
        raise InvalidKey(f"hash {hash_id:02d} takes a {HASH_LENGTHS[hash_id]}-byte PSK, not {len(psk)} bytes")
    return hash_id, psk


def key_name(text: str) -> str:
    """The name a PSK has in an SPDK keyring, from its fingerprint (meshblock/dhchap.py)."""
    return KEY_NAME_PREFIX + fingerprint(text)
