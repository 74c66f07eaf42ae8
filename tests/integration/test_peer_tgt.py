"""The lab's storage server is a real tgtd: LUNs carry the NAA id we give them, and its
initiator ACL decides which IQN sees them (checked with libiscsi's own initiator)."""

from __future__ import annotations

import secrets
import subprocess
from collections.abc import Callable

import pytest

from tests.lab.tgt import LabLun, Tgt

HOST_A = "iqn.1998-01.com.vmware:lab-host-a"
HOST_B = "iqn.1998-01.com.vmware:lab-host-b"


@pytest.fixture
def probe_lun(make_lun: Callable[..., LabLun]) -> LabLun:
    """A 64 MiB LUN on a fresh target whose ACL holds only HOST_A."""
    return make_lun([HOST_A])


def _iscsi(tool: str, initiator: str, url: str, *extra: str) -> subprocess.CompletedProcess[str]:
    return subprocess.run([tool, "-i", initiator, *extra, url], capture_output=True, text=True, timeout=30)


def _listing(tgt: Tgt, initiator: str) -> str:
    """What a discovery as `initiator` lists; it must succeed, since a failed one lists nothing
    and would pass for "not visible"."""
    result = _iscsi("iscsi-ls", initiator, f"iscsi://{tgt.portal}/", "-s")
    assert result.returncode == 0, result.stderr
    return result.stdout


def _assert_login_refused(tgt: Tgt, initiator: str, lun: LabLun) -> None:
    inquiry = _iscsi("iscsi-inq", initiator, f"iscsi://{tgt.portal}/{lun.target}/{lun.lun}")
    assert inquiry.returncode != 0
    assert "Target not found(515)" in inquiry.stdout + inquiry.stderr


def test_bound_initiator_lists_the_lun(tgt: Tgt, probe_lun: LabLun) -> None:
    block = _listing(tgt, HOST_A).split(f"Target:{probe_lun.target} ", 1)[1].split("Target:", 1)[0]
    assert "Lun:1" in block
    assert "DIRECT_ACCESS" in block


def test_other_initiator_does_not_see_the_target(tgt: Tgt, probe_lun: LabLun) -> None:
    assert probe_lun.target not in _listing(tgt, HOST_B)
    _assert_login_refused(tgt, HOST_B, probe_lun)


def _naa_without_zero_bytes() -> str:
    # iscsi-inq prints the binary NAA designator raw and stops at a zero byte
    while True:
        naa = "6001405" + secrets.token_hex(13)[:25]
        if "00" not in [naa[i : i + 2] for i in range(0, 32, 2)]:
            return naa


def test_lun_reports_the_naa_we_chose(tgt: Tgt, make_lun: Callable[..., LabLun]) -> None:
    naa = _naa_without_zero_bytes()
    lun = make_lun([HOST_A], naa=naa)
    result = subprocess.run(
        ["iscsi-inq", "-i", HOST_A, "--evpd=1", "--pagecode=131", f"iscsi://{tgt.portal}/{lun.target}/1"],
        capture_output=True,
        timeout=30,
    )
    assert result.returncode == 0, result.stderr
    designators = result.stdout.split(b"Designator Type:(3) NAA\nDesignator:[")
    assert len(designators) > 1, result.stdout
    binary_naa = designators[1].split(b"]\n", 1)[0]
    assert binary_naa.hex() == naa


def test_unbinding_takes_the_lun_away(tgt: Tgt, probe_lun: LabLun) -> None:
    assert probe_lun.target in _listing(tgt, HOST_A)
    tgt.adm("--op", "unbind", "--mode", "target", "--tid", str(probe_lun.tid), "--initiator-name", HOST_A)
    assert probe_lun.target not in _listing(tgt, HOST_A)
    _assert_login_refused(tgt, HOST_A, probe_lun)
