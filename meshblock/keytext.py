"""The text form NVMe gives secrets: ``<prefix>:<hh>:<base64 of the key followed by its CRC-32,
little-endian>:``, where ``hh`` (two decimal digits) names a hash. DH-HMAC-CHAP secrets
(``DHHC-1``, meshblock/dhchap.py) and NVMe/TCP TLS pre-shared keys (``NVMeTLSkey-1``,
meshblock/tlspsk.py) are both written this way; each module says which hashes and lengths it takes."""

from __future__ import annotations

import base64
import binascii
import re
import struct
import zlib


class KeyTextError(ValueError):
    pass


def _crc(key: bytes) -> bytes:
    return struct.pack("<I", zlib.crc32(key) & 0xFFFFFFFF)


def encode(prefix: str, hash_id: int, key: bytes) -> str:
    return f"{prefix}:{hash_id:02d}:{base64.b64encode(key + _crc(key)).decode()}:"


def decode(prefix: str, text: str, what: str = "key") -> tuple[int, bytes]:
    """The hash id and the key of ``text``; KeyTextError when it is not that form or its CRC-32 is off."""
    m = re.match(rf"^{re.escape(prefix)}:(\d\d):([A-Za-z0-9+/=]+):$", text)
    if m is None:
        raise KeyTextError(f"not a {what} ({prefix}:<hash>:<base64>:)")
    try:
        raw = base64.b64decode(m.group(2), validate=True)
    except binascii.Error as e:
        raise KeyTextError(f"the key part is not base64: {e}") from None
    key, crc = raw[:-4], raw[-4:]
    if _crc(key) != crc:
        raise KeyTextError(f"the CRC-32 does not match the {what}")
    return int(m.group(1)), key
