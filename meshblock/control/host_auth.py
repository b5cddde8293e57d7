"""DH-HMAC-CHAP for a volume's hosts: the controller makes each host's secrets, keeps them sealed in
the volume record (meshblock/secretbox.py), gives them to the heads that export the volume and to
GetConnectInfo for that host, and nowhere else. TLS volumes' per-host pre-shared keys
(meshblock/tlspsk.py) are kept and handed out the same way.

A volume record holds, per authenticated host, the fingerprints of its secrets in the clear
(``host_auth``: what heads report back is compared with them) and the secrets sealed
(``host_secrets``), each bound to "<volume id>/<host NQN>".
"""

from __future__ import annotations

from .. import tlspsk
from ..dhchap import HostKeys, encode, fingerprint, mode
from ..errors import FailedPrecondition, InvalidArgument
from ..model import Volume
from ..proto.meshblock.v1 import agent_pb2 as apb
from ..secretbox import ENV_VAR, SealedSecretError, SecretBox

NO_KEY = (f"this controller has no secrets key to keep DH-HMAC-CHAP secrets with: start it with "
          f"--secrets-key-file FILE or ${ENV_VAR}")
NO_KEY_TLS = NO_KEY.replace("DH-HMAC-CHAP secrets", "TLS pre-shared keys")


def _context(v: Volume, host: str) -> str:
    return f"{v.id}/{host}"


def _box(box: SecretBox | None, v: Volume) -> SecretBox:
    if box is None:
        raise FailedPrecondition(f"volume {v.name!r}: {NO_KEY}")
    return box


def secrets_of(v: Volume, host: str, box: SecretBox | None) -> HostKeys | None:
    """The host's secrets (None: it connects without authenticating)."""
    sealed = v.host_secrets.get(host)
    if sealed is None:
        return None
    try:
        return HostKeys.unpack(_box(box, v).open(sealed, _context(v, host)))
    except SealedSecretError as e:
        raise FailedPrecondition(f"volume {v.name!r}, host {host}: {e}") from None


def head_keys(v: Volume, box: SecretBox | None) -> list[apb.HostKey]:
    """What a head exporting ``v`` is told: the secrets of its published hosts that authenticate,
    and on a TLS volume their PSKs."""
    out = []
    for host in sorted(h for h in set(v.host_secrets) | set(v.host_psks) if h in v.hosts):
        keys = secrets_of(v, host, box)
        out.append(apb.HostKey(host_nqn=host, dhchap_key=keys.key if keys else "",
                               dhchap_ctrl_key=keys.ctrl_key if keys else "", tls_psk=psk_of(v, host, box)))
    return out


def psk_of(v: Volume, host: str, box: SecretBox | None) -> str:
    """The host's TLS PSK ("" when the volume is not TLS or the host is not published)."""
    sealed = v.host_psks.get(host)
    if sealed is None:
        return ""
    try:
        return _box(box, v).open(sealed, _context(v, host) + "/tls")
    except SealedSecretError as e:
        raise FailedPrecondition(f"volume {v.name!r}, host {host}: {e}") from None


def grant_psk(v: Volume, host: str, box: SecretBox | None) -> bool:
    """A TLS volume's host gets its PSK when it is published (kept when it is published again)."""
    if not v.tls or host in v.host_psks:
        return False
    psk = tlspsk.generate()
    v.host_psks = {**v.host_psks, host: _box(box, v).seal(psk, _context(v, host) + "/tls")}
    v.host_tls = {**v.host_tls, host: fingerprint(psk)}
    return True


def check_opens(v: Volume, box: SecretBox | None) -> None:
    """FailedPrecondition, saying why, unless every secret the volume's heads need opens with this
    controller's key: checked before anything of the volume is changed, so a controller started
    without the key (or with another) leaves such volumes as their heads have them."""
    for host in v.host_secrets:
        secrets_of(v, host, box)
    for host in v.host_psks:
        psk_of(v, host, box)


def expected_psks(v: Volume) -> dict[str, str]:
    """host NQN -> PSK fingerprint, for the published hosts of a TLS volume: what a head should report."""
    return {h: fp for h, fp in v.host_tls.items() if h in v.hosts}


def applied_key(v: Volume) -> tuple:
    """What the hosts' secrets a head holds depend on (the reconciler's "applied" keys)."""
    return tuple(sorted(v.host_auth.items())), v.tls, tuple(sorted(v.host_tls.items()))


def link_secret(box: SecretBox | None, node_id: str) -> str:
    """The DH-HMAC-CHAP secret a node proves when its heads attach replicas' exports ("" without a
    secrets key: links then admit nodes by NQN alone). Derived from the secrets key, so every
    controller holding it gives the same one and nothing is stored."""
    if box is None:
        return ""
    return encode(box.derive("dhchap-link/" + node_id), 1)


def link_keys(box: SecretBox | None, nodes) -> list[apb.HostKey]:
    """What a replica export that admits ``nodes`` is told: the secret each proves."""
    return [apb.HostKey(host_nqn=n.host_nqn, dhchap_key=link_secret(box, n.id)) for n in nodes] if box else []


def link_fingerprint(box: SecretBox | None, node) -> str:
    """What a replica export reports for ``node`` when it admits it as the records ask."""
    return fingerprint(link_secret(box, node.id)) if box is not None else ""


def expected(v: Volume) -> dict[str, str]:
    """host NQN -> fingerprints, for the published hosts that authenticate: what a head should report."""
    return {h: fp for h, fp in v.host_auth.items() if h in v.hosts}


def modes(v: Volume) -> dict[str, str]:
    return {h: mode(fp) for h, fp in v.host_auth.items()}


def grant(v: Volume, host: str, box: SecretBox | None, *, dhchap: bool, bidirectional: bool,
          rotate: bool) -> bool:
    """Make the secrets a publish asks for; whether the record changed.

    A host published again keeps its secrets (adding a controller key for ``bidirectional``);
    ``rotate`` replaces them (a bidirectional host stays bidirectional). Dropping authentication,
    or the controller key, takes an unpublish.
    """
    asked = dhchap or bidirectional or rotate
    if not asked:
        return False
    if v.protocol != "nvmf":
        raise InvalidArgument("dhchap", "DH-HMAC-CHAP is for NVMe/TCP volumes; iSCSI volumes use CHAP "
                                        "(volume create --chap-user)")
    cur = secrets_of(v, host, box)
    want_ctrl = bidirectional or (cur is not None and cur.bidirectional)
    if cur is None or rotate:
        new = HostKeys.new(want_ctrl)
    elif want_ctrl and not cur.bidirectional:
        new = HostKeys(cur.key, HostKeys.new(True).ctrl_key)
    else:
        return False
    # new dicts, never changed in place: the record may be the one the cluster view holds
    v.host_secrets = {**v.host_secrets, host: _box(box, v).seal(new.pack(), _context(v, host))}
    v.host_auth = {**v.host_auth, host: new.fingerprints}
    return True


def revoke(v: Volume, host: str) -> bool:
    had = host in v.host_secrets or host in v.host_auth or host in v.host_psks
    v.host_secrets = {h: s for h, s in v.host_secrets.items() if h != host}
    v.host_auth = {h: fp for h, fp in v.host_auth.items() if h != host}
    v.host_psks = {h: s for h, s in v.host_psks.items() if h != host}
    v.host_tls = {h: fp for h, fp in v.host_tls.items() if h != host}
    return had
