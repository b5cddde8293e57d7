"""TLS PSKs in the NVMe TLS PSK interchange format, checked against nvme-cli's own reading and writing."""

from __future__ import annotations

import base64
import shutil
import subprocess

import pytest

from meshblock import tlspsk

nvme = shutil.which("nvme")


def test_round_trip_and_refusals():
    text = tlspsk.generate()
    assert text.startswith("NVMeTLSkey-1:01:") and text.endswith(":")
    hash_id, psk = tlspsk.decode(text)
    assert hash_id == 1 and len(psk) == 32 and tlspsk.encode(psk) == text
    assert tlspsk.decode(tlspsk.generate(2))[0] == 2 and len(tlspsk.decode(tlspsk.generate(2))[1]) == 48
    raw = bytearray(base64.b64decode(text.split(":")[2]))
    raw[0] ^= 1
    for bad in (f"NVMeTLSkey-1:01:{base64.b64encode(bytes(raw)).decode()}:", "NVMeTLSkey-1:03:AAAA:",
                text.replace("NVMeTLSkey-1:01", "NVMeTLSkey-1:02"), "DHHC-1:01:" + text.split(":")[2] + ":"):
        with pytest.raises(tlspsk.InvalidKey):
            tlspsk.decode(bad)
    assert tlspsk.key_name(text).startswith("mb-psk-") and text.split(":")[2] not in tlspsk.key_name(text)


@pytest.mark.skipif(nvme is None, reason="nvme-cli is not installed")
def test_nvme_cli_and_meshblock_read_each_others_keys():
    for _ in range(3):
        ours = tlspsk.generate()
        r = subprocess.run([nvme, "check-tls-key", f"--key={ours}"], capture_output=True, text=True, timeout=30)
        assert r.returncode == 0 and "Key is valid (HMAC 1, length 32" in r.stdout + r.stderr, r
        theirs = subprocess.run([nvme, "gen-tls-key"], capture_output=True, text=True, timeout=30,
                                check=True).stdout.strip()
        assert tlspsk.decode(theirs)[0] == 1
