"""The node service inside the lab's KVM guest: the libvirt layer's fixtures (the lab's libvirtd
and guest, tgtd LUNs masked under a prefix of the test's own), and `node`, which runs
`in_guest.py` in the guest with this machine's python and returns its step results."""

from __future__ import annotations

import json
from collections.abc import Callable
from pathlib import Path
from typing import Any

import pytest

from tests.integration.libvirt.conftest import (  # noqa: F401 - fixtures used by this package
    backend,
    kvm,
    masked_lun,
    prefix,
)
from tests.lab import csi
from tests.lab.libvirt import LibvirtGuest

REPO = Path(__file__).resolve().parents[3]
PYTHON = str(REPO / ".venv" / "bin" / "python")
SCRIPT = str(Path(__file__).with_name("in_guest.py"))
SOCKET = "/run/lunbridge-csi-node-test.sock"
STATE_DIR = "/var/lib/lunbridge-guest/csi-node-test"

Node = Callable[..., list[dict[str, Any]]]


def drive(guest: LibvirtGuest, steps: list[dict[str, Any]], **service: Any) -> list[dict[str, Any]]:
    args = {"socket": SOCKET, "service": {"state_dir": STATE_DIR, **service}, "steps": steps}
    done = guest.run([PYTHON, SCRIPT, json.dumps(args)], timeout=600, env=csi.GUEST_ENV)
    assert done.returncode == 0, f"in_guest.py exited {done.returncode}: {done.stderr[-3000:]}"
    results: list[dict[str, Any]] = json.loads(done.stdout.strip().splitlines()[-1])
    return results


@pytest.fixture
def node(kvm_guest: LibvirtGuest) -> Node:
    """`node(steps, **service_options)` → one result per step, run by the real NodeService in the guest."""

    def run(steps: list[dict[str, Any]], **service: Any) -> list[dict[str, Any]]:
        return drive(kvm_guest, steps, **service)

    return run
