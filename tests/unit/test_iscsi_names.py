"""iSCSI names and initiator networks as the APIs accept them."""

from __future__ import annotations

import pytest

from meshblock.errors import InvalidArgument
from meshblock.util import check_iqn, check_netmask


@pytest.mark.parametrize("value,expected", [
    ("iqn.1993-08.org.debian:01:abcdef", "iqn.1993-08.org.debian:01:abcdef"),
    ("IQN.2026-11.io.Meshblock:Host-1", "iqn.2026-11.io.meshblock:host-1"),   # names compare without case
    ("iqn.2026-01.com.example", "iqn.2026-01.com.example"),
    ("eui.0123456789ABCDEF", "eui.0123456789abcdef"),
])
def test_iqn_accepted(value, expected):
    assert check_iqn("initiator_iqn", value) == expected


@pytest.mark.parametrize("value", [
    "", "iqn.2026-13.com.example:x", "iqn.26-01.com.example", "iqn.2026-01", "iqn.2026-01.-bad.example",
    "nqn.2026-11.io.meshblock:host:x", "eui.0123", "eui.0123456789abcdeg", "iqn.2026-01.com.example:a b",
    "iqn.2026-01.com.example:" + "x" * 220,
])
def test_iqn_refused_naming_the_field(value):
    with pytest.raises(InvalidArgument) as ei:
        check_iqn("initiator_iqn", value)
    assert ei.value.field == "initiator_iqn"


@pytest.mark.parametrize("value,expected", [
    ("any", "ANY"), ("10.1.2.3/8", "10.0.0.0/8"), ("192.168.1.7", "192.168.1.7/32"),
    ("fd00::1/8", "[fd00::]/8"), ("[fd00::]/16", "[fd00::]/16"),
])
def test_netmask_in_spdk_form(value, expected):
    assert check_netmask("iscsi.netmasks", value) == expected


@pytest.mark.parametrize("value", ["", "10.0.0.0/33", "host.example", "fd00::/129"])
def test_netmask_refused(value):
    with pytest.raises(InvalidArgument) as ei:
        check_netmask("iscsi.netmasks", value)
    assert ei.value.field == "iscsi.netmasks"
