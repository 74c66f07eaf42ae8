"""One spelling for every SAN identifier, whichever side reported it."""

from __future__ import annotations

import pytest

from lunbridge.errors import InvalidArgument
from lunbridge.san import iqn, naa, wwn


@pytest.mark.parametrize(
    "value",
    [
        0x10000090FA1B2C3D,
        "10000090fa1b2c3d",
        "0x10000090FA1B2C3D",
        "10:00:00:90:FA:1B:2C:3D",
        "10-00-00-90-fa-1b-2c-3d",
    ],
)
def test_wwn_forms_agree(value: str | int) -> None:
    assert wwn(value) == "10:00:00:90:fa:1b:2c:3d"


def test_wwn_from_negative_vsphere_long() -> None:
    # vSphere returns WWNs as signed 64-bit longs; the top bit set makes them negative
    assert wwn(-0x5FFFFF6F05E4D3C3) == "a0:00:00:90:fa:1b:2c:3d"


@pytest.mark.parametrize("bad", ["10000090fa1b2c", "zz000090fa1b2c3d", ""])
def test_bad_wwn_is_refused(bad: str) -> None:
    with pytest.raises(InvalidArgument, match="is not a WWN"):
        wwn(bad)


def test_naa_with_or_without_prefix() -> None:
    assert naa("60014059E0D5A7B3C4D5E6F708192A3B") == "naa.60014059e0d5a7b3c4d5e6f708192a3b"
    assert naa("naa.600a098038303053") == "naa.600a098038303053"
    with pytest.raises(InvalidArgument, match="not an NAA id"):
        naa("t10.IET_00010001")


def test_iqn_is_validated_and_lowercased() -> None:
    assert iqn("IQN.1998-01.com.vmware:Host-1") == "iqn.1998-01.com.vmware:host-1"
    assert iqn("eui.0123456789ABCDEF") == "eui.0123456789abcdef"
    with pytest.raises(InvalidArgument, match="not an iSCSI name"):
        iqn("host-1")
