"""Validation of admin API input: every problem names its field."""

from __future__ import annotations

import re

from ..errors import InvalidArgument
from ..qos import QosLimits, problems
from ..util import check_iqn, check_netmask, check_nqn

MiB = 1 << 20
MAX_VOLUME_BYTES = 1 << 50          # 1 PiB
MAX_REPLICAS = 5
_NAME_RE = re.compile(r"^[A-Za-z0-9][A-Za-z0-9._-]{0,127}$")
_LABEL_KEY_RE = re.compile(r"^([a-z0-9.-]{1,253}/)?[A-Za-z0-9]([A-Za-z0-9._-]{0,61}[A-Za-z0-9])?$")
_CHAP_RE = re.compile(r"^[\x21-\x7e]+$")
PROTOCOLS = ("nvmf", "iscsi")
_LABEL_VALUE_RE = re.compile(r"^([A-Za-z0-9]([A-Za-z0-9._-]{0,61}[A-Za-z0-9])?)?$")


_URL_RE = re.compile(r"^https?://[\x21-\x7e]+$")
_HOST_ID_RE = re.compile(r"^[A-Za-z0-9]([A-Za-z0-9._-]{0,251}[A-Za-z0-9])?$")


def host_id(field: str, value: str) -> str:
    """Ids of hosts that attach volumes: Kubernetes node names and the like."""
    if not _HOST_ID_RE.match(value or ""):
        raise InvalidArgument(field, f"{value!r} is not a valid host id: 1-253 letters, digits, '.', '_', '-', "
                                     "starting and ending with a letter or digit")
    return value


def name(field: str, value: str) -> str:
    if not _NAME_RE.match(value or ""):
        raise InvalidArgument(field, f"{value!r} is not a valid name: 1-128 letters, digits, '.', '_', '-', "
                                     "starting with a letter or digit")
    return value


def size(field: str, value: int, granularity: int) -> int:
    if value <= 0:
        raise InvalidArgument(field, "must be positive")
    if value > MAX_VOLUME_BYTES:
        raise InvalidArgument(field, f"{value} bytes is larger than the supported maximum of {MAX_VOLUME_BYTES}")
    return -(-value // granularity) * granularity


def replicas(field: str, value: int) -> int:
    n = value or 1
    if not 1 <= n <= MAX_REPLICAS:
        raise InvalidArgument(field, f"{value} is not between 1 and {MAX_REPLICAS}")
    return n


def labels(field: str, value: dict[str, str]) -> dict[str, str]:
    for k, v in value.items():
        if not _LABEL_KEY_RE.match(k):
            raise InvalidArgument(field, f"label key {k!r} is not valid")
        if not _LABEL_VALUE_RE.match(v):
            raise InvalidArgument(field, f"label value {v!r} of {k!r} is not valid")
    return dict(value)


def host_nqn(field: str, value: str) -> str:
    return check_nqn(field, value)


def ref(field: str, value: str) -> str:
    if not value:
        raise InvalidArgument(field, "required")
    return value


def metrics_url(field: str, value: str) -> str:
    """Optional: an http(s) URL of printable characters, short enough to list."""
    if value and (len(value) > 512 or not _URL_RE.match(value)):
        raise InvalidArgument(field, f"{value[:80]!r} is not an http:// or https:// URL")
    return value


def protocol(field: str, value: str) -> str:
    p = (value or "nvmf").lower()
    if p not in PROTOCOLS:
        raise InvalidArgument(field, f"{value!r} is not nvmf or iscsi")
    return p


def iqn(field: str, value: str) -> str:
    return check_iqn(field, value)


def netmasks(field: str, values: list[str]) -> list[str]:
    return list(dict.fromkeys(check_netmask(field, v) for v in values))


def chap(user: str, secret: str) -> tuple[str, str]:
    """One-way CHAP credentials: both or neither; the secret 12-255 printable characters (RFC 3720
    asks for at least 96 bits where the link is not encrypted)."""
    if not user and not secret:
        return "", ""
    if not user:
        raise InvalidArgument("iscsi.chap_user", "required with a CHAP secret")
    if not secret:
        raise InvalidArgument("iscsi.chap_secret", "required with a CHAP user")
    if len(user) > 255 or not _CHAP_RE.match(user):
        raise InvalidArgument("iscsi.chap_user", "1-255 printable characters without spaces")
    if not 12 <= len(secret) <= 255 or not _CHAP_RE.match(secret):
        raise InvalidArgument("iscsi.chap_secret", "12-255 printable characters without spaces")
    return user, secret


def qos(field: str, limits: QosLimits) -> QosLimits:
    """QoS limits SPDK takes as given (meshblock/qos.py has its rules)."""
    for name, problem in problems(limits):
        raise InvalidArgument(f"{field}.{name}", problem)
    return limits
