"""DH-HMAC-CHAP secrets (NVMe in-band authentication) in the DHHC-1 representation.

NVMe Base Specification 2.x, 8.3.5.6 "DH-HMAC-CHAP secret representation":
``DHHC-1:<hh>:<base64 of the secret followed by its CRC-32, little-endian>:`` where ``hh`` names the
hash the secret is transformed with before use (00: none, 01: SHA-256, 02: SHA-384, 03: SHA-512)
and the secret is 32, 48 or 64 bytes long. nvme-cli (``--dhchap-secret``), the Linux kernel and
SPDK's keyring all take this text.
"""

from __future__ import annotations

import hashlib
import secrets
from dataclasses import dataclass

from . import keytext

PREFIX = "DHHC-1"
SECRET_LENGTHS = (32, 48, 64)
# the transform hash and the secret length nvme-cli's gen-dhchap-key gives each
HASH_LENGTHS = {1: 32, 2: 48, 3: 64}
KEY_NAME_PREFIX = "mb-dhchap-"


class InvalidSecret(ValueError):
    pass


def generate(hash_id: int = 1) -> str:
    """A new random secret, transformed with SHA-256 (``hash_id`` 1) by default."""
    if hash_id not in HASH_LENGTHS:
        raise ValueError(f"hash id {hash_id}: 1 (SHA-256), 2 (SHA-384) or 3 (SHA-512)")
    return encode(secrets.token_bytes(HASH_LENGTHS[hash_id]), hash_id)


def encode(secret: bytes, hash_id: int = 0) -> str:
    if len(secret) not in SECRET_LENGTHS:
        raise InvalidSecret(f"a secret is 32, 48 or 64 bytes, not {len(secret)}")
    return keytext.encode(PREFIX, hash_id, secret)


def decode(text: str) -> tuple[int, bytes]:
    """The transform hash id and the secret of a DHHC-1 text; InvalidSecret when it is not one."""
    try:
        hash_id, secret = keytext.decode(PREFIX, text, "DHHC-1 secret")
    except keytext.KeyTextError as e:
        raise InvalidSecret(str(e)) from None
    if hash_id not in (0, *HASH_LENGTHS):
        raise InvalidSecret(f"hash {hash_id:02d}: 00 (none), 01, 02 or 03")
    if len(secret) not in SECRET_LENGTHS:
        raise InvalidSecret(f"a secret is 32, 48 or 64 bytes, not {len(secret)}")
    return hash_id, secret


def fingerprint(text: str) -> str:
    """A short digest that tells secrets apart without revealing them (a secret is 256 bits or more
    of randomness, so its SHA-256 gives nothing away)."""
    return hashlib.sha256(text.encode()).hexdigest()[:16]


def key_name(text: str) -> str:
    """The name a secret has in an SPDK keyring: derived from its fingerprint, so the name a target
    reports says which secret it holds."""
    return KEY_NAME_PREFIX + fingerprint(text)


def fingerprint_of_key_name(name: str) -> str:
    return name[len(KEY_NAME_PREFIX):] if name.startswith(KEY_NAME_PREFIX) else ""


@dataclass(frozen=True)
class HostKeys:
    """What one host proves (``key``) and, for bidirectional authentication, what the target proves
    to it (``ctrl_key``)."""
    key: str
    ctrl_key: str = ""

    @property
    def bidirectional(self) -> bool:
        return bool(self.ctrl_key)

    @property
    def fingerprints(self) -> str:
        """``<key fingerprint>`` or ``<key fingerprint>,<controller key fingerprint>``: what records
        and head reports compare."""
        return fingerprint(self.key) + ("," + fingerprint(self.ctrl_key) if self.ctrl_key else "")

    def pack(self) -> str:
        return self.key + ("\n" + self.ctrl_key if self.ctrl_key else "")

    @classmethod
    def unpack(cls, text: str) -> "HostKeys":
        key, _, ctrl = text.partition("\n")
        return cls(key, ctrl)

    @classmethod
    def new(cls, bidirectional: bool) -> "HostKeys":
        return cls(generate(), generate() if bidirectional else "")

    def __repr__(self) -> str:       # never the secrets themselves
        return f"HostKeys({self.fingerprints})"


def mode(fingerprints: str) -> str:
    """``dhchap`` or ``dhchap-bidirectional`` from a fingerprints string ("" when none)."""
    if not fingerprints:
        return ""
    return "dhchap-bidirectional" if "," in fingerprints else "dhchap"
