"""Both console scripts exist, document themselves, and refuse to pretend they work."""

from __future__ import annotations

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


@pytest.mark.parametrize("module", ["lunbridge_operator", "lunbridge_csi"])
def test_running_without_implementation_fails_clearly(module: str) -> None:
    result = subprocess.run([sys.executable, "-m", module], capture_output=True, text=True)
    assert result.returncode == 2
    assert "not part of this build yet" in result.stderr


def test_csi_rejects_unknown_mode() -> None:
    result = subprocess.run(
        [sys.executable, "-m", "lunbridge_csi", "--mode", "sideways"], capture_output=True, text=True
    )
    assert result.returncode == 2
    assert "invalid choice: 'sideways'" in result.stderr
