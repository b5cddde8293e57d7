"""Secrets kept in the store are sealed with a key the controller is given (a file or an environment
variable), with AES-256-GCM. Each sealed value is bound to where it belongs (its context, e.g.
``volume id/host NQN``): moved to another record, or changed, it no longer opens.

Anyone who reads the store (an etcd backup, the SQLite file) without the key learns nothing of the
secrets; the controller that holds the key can open them.
"""

from __future__ import annotations

import base64
import binascii
import hashlib
import hmac
import os
import secrets
from pathlib import Path

from cryptography.exceptions import InvalidTag
from cryptography.hazmat.primitives.ciphers.aead import AESGCM

ENV_VAR = "MESHBLOCK_SECRETS_KEY"
VERSION = "s1"
KEY_BYTES = 32


class SecretsKeyError(ValueError):
    """A secrets key that cannot be used (missing, malformed)."""


class SealedSecretError(ValueError):
    """A sealed value that does not open with this key (another key, or changed)."""


def parse_key(text: str, where: str) -> bytes:
    try:
        key = base64.b64decode(text.strip(), validate=True)
    except (binascii.Error, ValueError):
        key = b""
    if len(key) != KEY_BYTES:
        raise SecretsKeyError(f"{where}: a secrets key is {KEY_BYTES} random bytes in base64 "
                              "(make one with: head -c 32 /dev/urandom | base64)")
    return key


def new_key_text() -> str:
    return base64.b64encode(secrets.token_bytes(KEY_BYTES)).decode() + "\n"


def write_key_file(path: Path) -> None:
    """Create a new secrets key file readable by its owner only (an existing one is kept)."""
    path.parent.mkdir(parents=True, exist_ok=True)
    try:
        fd = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o600)
    except FileExistsError:
        return
    with os.fdopen(fd, "w") as f:
        f.write(new_key_text())


class SecretBox:
    def __init__(self, key: bytes):
        if len(key) != KEY_BYTES:
            raise SecretsKeyError(f"a secrets key is {KEY_BYTES} bytes")
        self._aead = AESGCM(key)
        # secrets derived from the key (not stored anywhere) come from a key of their own
        self._derive = hmac.new(key, b"meshblock derived secrets", hashlib.sha256).digest()

    @classmethod
    def load(cls, key_file: str = "", env: dict[str, str] | None = None) -> "SecretBox | None":
        """The box of the key in ``key_file`` or else in $MESHBLOCK_SECRETS_KEY; None without either."""
        env = os.environ if env is None else env
        if key_file:
            try:
                text = Path(key_file).read_text()
            except OSError as e:
                raise SecretsKeyError(f"secrets key file {key_file}: {e.strerror}") from None
            return cls(parse_key(text, key_file))
        if env.get(ENV_VAR):
            return cls(parse_key(env[ENV_VAR], f"${ENV_VAR}"))
        return None

    def seal(self, plaintext: str, context: str) -> str:
        nonce = secrets.token_bytes(12)
        sealed = self._aead.encrypt(nonce, plaintext.encode(), context.encode())
        return f"{VERSION}:" + base64.urlsafe_b64encode(nonce + sealed).decode()

    def open(self, sealed: str, context: str) -> str:
        version, _, body = sealed.partition(":")
        if version != VERSION:
            raise SealedSecretError("not a sealed secret")
        try:
            raw = base64.urlsafe_b64decode(body.encode())
            return self._aead.decrypt(raw[:12], raw[12:], context.encode()).decode()
        except (InvalidTag, binascii.Error, ValueError):
            raise SealedSecretError("the secret does not open with this controller's secrets key "
                                    "(another key sealed it, or it was changed)") from None

    def derive(self, label: str) -> bytes:
        """32 bytes that only this key gives for ``label``: the same on every controller holding it."""
        return hmac.new(self._derive, label.encode(), hashlib.sha256).digest()

    def __repr__(self) -> str:
        return "SecretBox(<key>)"
