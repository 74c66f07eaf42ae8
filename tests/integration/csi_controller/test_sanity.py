"""CSI conformance of the Identity and Controller services: the real csi-sanity (v5.5.0, built
by hack/peers/build-tools.sh) against `lunbridge-csi --mode all` beside the real operator, on
the lab. Volumes are really created, published (RDMs in the simulator) and deleted. Every spec,
the Node ones included, runs against the KVM chain in tests/integration/csi_sanity."""

from __future__ import annotations

import subprocess
from collections.abc import Iterator
from pathlib import Path

import pytest

from tests.lab import csi, paths, procs
from tests.lab import vcsim as vcsim_lab
from tests.lab.lab import LabState

NAME = "csi-sanity-plugin"


@pytest.fixture
def plugin_socket(lab: LabState, operator: int, vcsim: vcsim_lab.VcsimPeer, tmp_path: Path) -> Iterator[Path]:
    """The plugin on a unix socket; its node id is a lab VM's, so publish attaches for real."""
    lab_dir = Path(lab.lab_dir)
    socket = tmp_path / "csi.sock"
    node_id = f"vsphere://{vcsim.inventory.vms[-1].bios_uuid}"
    csi.start_plugin(lab.env(), lab_dir, f"unix://{socket}", "--mode", "all", "--node-id", node_id, name=NAME)
    try:
        yield socket
    finally:
        procs.stop(lab_dir, NAME, timeout=15)


def test_csi_sanity_controller_and_identity(plugin_socket: Path, tmp_path: Path) -> None:
    result = subprocess.run(
        [
            str(paths.bin_dir() / "csi-sanity"),
            f"--csi.endpoint=unix://{plugin_socket}",
            f"--csi.stagingdir={tmp_path / 'staging'}",
            f"--csi.mountdir={tmp_path / 'mount'}",
            "--csi.testvolumesize=67108864",
            "--ginkgo.focus=Controller Service|Identity Service",
            "--ginkgo.no-color",
        ],
        capture_output=True,
        text=True,
        timeout=900,
    )
    summary = [line for line in result.stdout.splitlines() if "Passed" in line and "Failed" in line]
    assert result.returncode == 0, result.stdout[-6000:] + result.stderr[-2000:]
    assert summary, result.stdout[-3000:]
    print(summary[-1])
    assert " 0 Failed" in summary[-1]
