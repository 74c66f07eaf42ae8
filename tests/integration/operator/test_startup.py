"""`lunbridge-operator` refuses to start, before it touches any object, when its settings are
missing or wrong: exit status 2 and one line that names what to fix (never a password)."""

from __future__ import annotations

import os
import secrets
import subprocess
import sys
import time
from pathlib import Path

import pytest

from tests.lab import tgt as tgt_lab
from tests.lab.lab import LabState


def run_operator(lab: LabState, **changes: str | None) -> tuple[int, str]:
    """Run the operator with the lab's environment changed (None removes a variable)."""
    env = {k: v for k, v in os.environ.items() if not k.startswith("LUNBRIDGE_")}
    env.update(lab.env(), LUNBRIDGE_METRICS_PORT="0")
    for key, value in changes.items():
        if value is None:
            env.pop(key, None)
        else:
            env[key] = value
    started = time.monotonic()
    result = subprocess.run(
        [sys.executable, "-m", "lunbridge_operator"], env=env, capture_output=True, text=True, timeout=60
    )
    print(f"refused in {time.monotonic() - started:.1f}s: {result.stderr.strip()}")
    return result.returncode, result.stdout + result.stderr


def test_missing_vcenter_url_is_named(lab: LabState) -> None:
    status, output = run_operator(lab, LUNBRIDGE_VSPHERE_URL=None)
    assert status == 2, output
    assert "LUNBRIDGE_VSPHERE_URL" in output
    assert lab.vsphere_password not in output


def test_wrong_password_names_the_url_and_user_but_no_password(lab: LabState) -> None:
    wrong = secrets.token_urlsafe(12)
    status, output = run_operator(lab, LUNBRIDGE_VSPHERE_PASSWORD=wrong)
    assert status == 2, output
    assert lab.vsphere_url in output
    assert lab.vsphere_user in output
    assert wrong not in output
    assert lab.vsphere_password not in output


@pytest.mark.parametrize("socket_file", [False, True], ids=["no-socket", "stale-socket"])
def test_a_tgtd_control_socket_nobody_serves_is_named(
    lab: LabState, tmp_path: Path, socket_file: bool
) -> None:
    if socket_file:  # a tgtd that ran there once and was killed leaves its socket file behind
        started = tgt_lab.start(tmp_path, name="tgtd-gone")
        control = started.control
        tgt_lab.stop(tmp_path, started, name="tgtd-gone")
        assert Path(f"/var/run/tgtd/socket.{control}").exists()
    else:
        control = tgt_lab._free_control(tmp_path)
    status, output = run_operator(lab, LUNBRIDGE_TGT_CONTROL_PORT=str(control))
    assert status == 2, output
    assert f"tgtd does not answer on control socket {control}" in output
    assert output.count("\n") <= 2, output  # one clear line, no traceback
