"""NVMe qualified names as the APIs accept them: what SPDK's target would refuse is refused first,
with the field named."""

from __future__ import annotations

import pytest

from meshblock.errors import InvalidArgument
from meshblock.util import check_nqn


@pytest.mark.parametrize("value", [
    "nqn.2014-08.org.nvmexpress:uuid:0f3c1b52-6a1e-4c35-9d7e-2b8c4a6f1e01",
    "nqn.2014-08.org.nvmexpress:uuid:0F3C1B52-6A1E-4C35-9D7E-2B8C4A6F1E01",
    "nqn.2026-11.io.meshblock:host:worker-1",
])
def test_nqn_accepted(value):
    assert check_nqn("host_nqn", value) == value


@pytest.mark.parametrize("value", [
    "", "host-1", "nqn.2014-08.org.nvmexpress:uuid:not-a-uuid",
    "nqn.2014-08.org.nvmexpress:uuid:0f3c1b52-6a1e-4c35-9d7e-2b8c4a6f1e0",     # one digit short
    "nqn.2014-08.org.nvmexpress:uuid:0f3c1b526a1e4c359d7e2b8c4a6f1e01",         # no dashes
    "nqn.2014-08.org.nvmexpress:uuid:{0f3c1b52-6a1e-4c35-9d7e-2b8c4a6f1e01}",
])
def test_nqn_refused_naming_the_field(value):
    with pytest.raises(InvalidArgument) as ei:
        check_nqn("host_nqn", value)
    assert ei.value.field == "host_nqn"
