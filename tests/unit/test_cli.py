"""Both console scripts exist, document themselves, and refuse to pretend they work (the CSI
plugin) or to start without their settings (the operator)."""

from __future__ import annotations

import os
import subprocess
import sys

import pytest


@pytest.mark.parametrize(
    ("module", "expected"),
    [("lunbridge_operator", "--vsphere-url"), ("lunbridge_csi", "--mode {controller,node,all}")],
)
def test_help_describes_options(module: str, expected: str) -> None:
    result = subprocess.run([sys.executable, "-m", module, "--help"], capture_output=True, text=True)
    assert result.returncode == 0
    assert expected in result.stdout


def test_running_without_implementation_fails_clearly() -> None:
    result = subprocess.run([sys.executable, "-m", "lunbridge_csi"], capture_output=True, text=True)
    assert result.returncode == 2
    assert "not part of this build yet" in result.stderr


def test_operator_without_settings_names_what_is_missing() -> None:
    env = {k: v for k, v in os.environ.items() if not k.startswith("LUNBRIDGE_")}
    result = subprocess.run(
        [sys.executable, "-m", "lunbridge_operator"], capture_output=True, text=True, env=env
    )
    assert result.returncode == 2
    assert "set LUNBRIDGE_VSPHERE_URL (--vsphere-url)" in result.stderr


def test_csi_rejects_unknown_mode() -> None:
    result = subprocess.run(
        [sys.executable, "-m", "lunbridge_csi", "--mode", "sideways"], capture_output=True, text=True
    )
    assert result.returncode == 2
    assert "invalid choice: 'sideways'" in result.stderr
