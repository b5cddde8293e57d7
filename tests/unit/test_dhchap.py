"""DHHC-1 secrets as nvme-cli reads and writes them, and the sealing of secrets in the store."""

from __future__ import annotations

import base64
import shutil
import subprocess

import pytest

from meshblock import dhchap
from meshblock.dhchap import HostKeys
from meshblock.secretbox import ENV_VAR, SealedSecretError, SecretBox, SecretsKeyError, new_key_text, write_key_file

NQN = "nqn.2014-08.org.nvmexpress:uuid:84a70f03-1649-4a72-85e9-8821ddf2a5df"


def test_generated_secrets_decode_and_differ():
    seen = set()
    for hash_id, length in dhchap.HASH_LENGTHS.items():
        text = dhchap.generate(hash_id)
        got_hash, secret = dhchap.decode(text)
        assert (got_hash, len(secret)) == (hash_id, length)
        assert text.startswith(f"DHHC-1:0{hash_id}:") and text.endswith(":")
        seen.add(text)
    assert len(seen) == 3


@pytest.mark.parametrize("bad", [
    "", "DHHC-1:01:abc", "DHHC-2:01:" + "A" * 48 + ":", "DHHC-1:04:" + "A" * 48 + ":",
    "DHHC-1:01:" + base64.b64encode(b"x" * 20).decode() + ":",          # too short
])
def test_malformed_secrets_are_refused(bad):
    with pytest.raises(dhchap.InvalidSecret):
        dhchap.decode(bad)


def test_a_changed_secret_fails_its_crc():
    text = dhchap.generate()
    raw = bytearray(base64.b64decode(text.split(":")[2]))
    raw[0] ^= 1
    with pytest.raises(dhchap.InvalidSecret, match="CRC"):
        dhchap.decode(f"DHHC-1:01:{base64.b64encode(bytes(raw)).decode()}:")


@pytest.mark.skipif(shutil.which("nvme") is None, reason="nvme-cli is installed by scripts/setup")
def test_nvme_cli_and_meshblock_read_each_others_secrets():
    ours = dhchap.generate()
    check = subprocess.run(["nvme", "check-dhchap-key", f"--key={ours}"], capture_output=True, text=True)
    assert check.returncode == 0 and "Key is valid" in check.stdout, check.stdout + check.stderr
    theirs = subprocess.run(["nvme", "gen-dhchap-key", "-m", "1", "-n", NQN], capture_output=True, text=True,
                            check=True).stdout.strip()
    assert dhchap.decode(theirs)[0] == 1


def test_host_keys_pack_fingerprints_and_never_show_secrets():
    keys = HostKeys.new(bidirectional=True)
    assert HostKeys.unpack(keys.pack()) == keys
    assert keys.fingerprints == f"{dhchap.fingerprint(keys.key)},{dhchap.fingerprint(keys.ctrl_key)}"
    assert dhchap.mode(keys.fingerprints) == "dhchap-bidirectional"
    one = HostKeys.new(bidirectional=False)
    assert HostKeys.unpack(one.pack()) == one and dhchap.mode(one.fingerprints) == "dhchap"
    for k in (keys, one):
        assert k.key not in repr(k) and (not k.ctrl_key or k.ctrl_key not in repr(k))
    assert dhchap.fingerprint_of_key_name(dhchap.key_name(one.key)) == dhchap.fingerprint(one.key)


def test_sealed_secrets_open_only_with_their_key_and_context(tmp_path):
    box = SecretBox.load(env={ENV_VAR: new_key_text()})
    sealed = box.seal("DHHC-1:01:secret:", "vol/host")
    assert "secret" not in sealed
    assert box.open(sealed, "vol/host") == "DHHC-1:01:secret:"
    assert box.seal("DHHC-1:01:secret:", "vol/host") != sealed      # a fresh nonce each time
    with pytest.raises(SealedSecretError):
        box.open(sealed, "vol/other-host")                           # moved to another place
    other = SecretBox.load(env={ENV_VAR: new_key_text()})
    with pytest.raises(SealedSecretError):
        other.open(sealed, "vol/host")                               # another controller's key
    tampered = sealed[:-4] + ("AAAA" if not sealed.endswith("AAAA") else "BBBB")
    with pytest.raises(SealedSecretError):
        box.open(tampered, "vol/host")


def test_secrets_key_from_a_file_or_the_environment(tmp_path, monkeypatch):
    path = tmp_path / "k"
    write_key_file(path)
    assert path.stat().st_mode & 0o777 == 0o600
    first = path.read_text()
    write_key_file(path)                    # kept: it opens what is already sealed
    assert path.read_text() == first
    box = SecretBox.load(str(path), env={})
    assert SecretBox.load(env={ENV_VAR: first}).open(box.seal("x", "c"), "c") == "x"
    assert SecretBox.load(env={}) is None
    (tmp_path / "bad").write_text("short\n")
    with pytest.raises(SecretsKeyError, match="32 random bytes"):
        SecretBox.load(str(tmp_path / "bad"), env={})
    with pytest.raises(SecretsKeyError, match="No such file"):
        SecretBox.load(str(tmp_path / "absent"), env={})


async def test_host_commands_never_show_secrets(caplog):
    import logging
    from meshblock.csi.host.run import CommandFailed, run
    secret = dhchap.generate()
    caplog.set_level(logging.DEBUG, logger="meshblock.csi.host.run")
    with pytest.raises(CommandFailed) as e:
        await run(["sh", "-c", "exit 3", "--dhchap-secret", secret], hide=(secret,))
    assert secret not in str(e.value) and "<secret>" in str(e.value)
    assert secret not in caplog.text and "<secret>" in caplog.text
