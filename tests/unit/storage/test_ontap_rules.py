"""The ONTAP backend's rules that need no cluster: the NAA a host sees for a LUN's serial, when a
rounded size is the size asked for, and ONTAP's error codes as lunbridge's errors."""

from __future__ import annotations

import pytest
from hypothesis import given
from hypothesis import strategies as st

from lunbridge.errors import (
    AlreadyExists,
    Busy,
    Conflict,
    InvalidArgument,
    LimitExceeded,
    LunbridgeError,
    NotFound,
    Unauthenticated,
    Unavailable,
)
from lunbridge.san import naa as normalize_naa
from lunbridge.storage.ontap.errors import ALREADY_DONE, already_done, error_for
from lunbridge.storage.ontap.identity import SIZE_TOLERANCE_BYTES, naa_from_serial, same_size

SERIALS = st.text(alphabet=st.characters(min_codepoint=0x20, max_codepoint=0x7E), min_size=12, max_size=12)


# --- NAA ------------------------------------------------------------------------------------------
@pytest.mark.parametrize(
    ("serial", "naa"),
    [
        ("RLIta+DhqCVk", "naa.600a0980524c4974612b44687143566b"),  # NetApp's documented pair
        ("wf0Iq+N4uck3", "naa.600a098077663049712b4e3475636b33"),
        ("81HeQ]LZpdF6", "naa.600a098038314865515d4c5a70644636"),
    ],
)
def test_a_serial_gives_the_naa_hosts_see(serial: str, naa: str) -> None:
    assert naa_from_serial(serial) == naa


@given(SERIALS)
def test_every_serial_gives_a_type_6_naa_of_32_hex_digits_that_lunbridge_accepts(serial: str) -> None:
    naa = naa_from_serial(serial)
    assert naa.startswith("naa.600a0980")
    assert len(naa) == 4 + 32
    assert normalize_naa(naa) == naa  # the form the node plugin compares with the guest's disk
    assert bytes.fromhex(naa[12:]).decode("ascii") == serial


@pytest.mark.parametrize("serial", ["", "RLIta+DhqCV", "RLIta+DhqCVkX", "RLIta+DhqCV\x00", "RLIta+DhqCVé"])
def test_a_serial_that_is_not_12_printable_ascii_characters_is_refused_by_name(serial: str) -> None:
    with pytest.raises(InvalidArgument, match="ONTAP LUN serial number"):
        naa_from_serial(serial)


# --- sizes ----------------------------------------------------------------------------------------
def test_ontaps_rounding_up_is_the_same_size_and_anything_else_is_not() -> None:
    asked = 300 << 30
    assert same_size(asked, asked)
    assert same_size(asked, 322163441664)  # what ONTAP reads back for 300 GiB
    assert not same_size(asked, asked - 1)  # ONTAP never rounds down
    assert not same_size(asked, asked + SIZE_TOLERANCE_BYTES)


# --- errors ---------------------------------------------------------------------------------------
@pytest.mark.parametrize(
    ("code", "status", "kind"),
    [
        ("5374242", 400, AlreadyExists),  # LUN exists
        ("5374023", 409, AlreadyExists),  # igroup exists
        ("1254197", 400, Conflict),  # delete of a mapped LUN
        ("5376520", 400, Conflict),  # delete of a clone's parent
        ("1254201", 400, NotFound),  # map of a missing LUN
        ("4", 200, NotFound),  # a failed job: entry does not exist
        ("5374892", 400, InvalidArgument),  # shrink
        ("5373980", 400, InvalidArgument),  # malformed initiator name
        ("262179", 400, InvalidArgument),  # unexpected field
        ("5374125", 400, LimitExceeded),  # no room in the FlexVol
        ("1638555", 400, Busy),  # snapshot locked by a clone
        ("5374581", 400, Unavailable),  # no iSCSI data interface
        (None, 401, Unauthenticated),
        (None, 403, Unauthenticated),
        (None, 404, NotFound),
        (None, 409, AlreadyExists),
        (None, 422, InvalidArgument),
        ("999999999", 400, InvalidArgument),  # an unknown code: by its status
        (None, 503, Unavailable),
        (None, 0, Unavailable),  # no answer at all
    ],
)
def test_each_ontap_code_or_status_is_one_lunbridge_error(code: str | None, status: int, kind: type) -> None:
    error = error_for("creating LUN /vol/lb_vol/vd-1", status, code, "something went wrong")
    assert type(error) is kind
    assert "creating LUN /vol/lb_vol/vd-1" in str(error)
    assert "something went wrong" in str(error)
    assert (f"(code {code})" in str(error)) is (code is not None)


def test_the_codes_that_mean_already_done_are_no_error_and_only_those() -> None:
    assert all(already_done(code) for code in ALREADY_DONE)
    assert not already_done("1254197")
    assert not already_done(None)
    assert set(ALREADY_DONE).isdisjoint(
        code for code in ("5374242", "1254197", "1254201", "5374892", "5374125", "1638555", "5374581")
    )


def test_a_secret_in_ontaps_message_does_not_reach_the_error() -> None:
    error: LunbridgeError = error_for(
        "logging in", 401, None, "bad credentials for https://admin:Pa55w0rd@svm1/api"
    )
    assert "Pa55w0rd" not in str(error)
