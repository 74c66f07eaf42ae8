"""The whole CSI chain as a cluster would run it, on the lab: the real operator with the KVM
layer, `lunbridge-csi --mode controller` on a unix socket on this machine, and `lunbridge-csi
--mode node` inside the lab's KVM guest, reached through the guest NIC's loopback forward
(tests.lab.csi, the same code as `make lab-up LAB_SERVICES=1`)."""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path

import pytest

from tests.lab import csi
from tests.lab import operator as operator_lab
from tests.lab.lab import LabState
from tests.lab.libvirt import LibvirtGuest


@pytest.fixture(scope="package")
def operator(lab: LabState) -> Iterator[int]:
    pid = operator_lab.start(lab)
    yield pid
    operator_lab.stop(lab)


@pytest.fixture(scope="package")
def controller_endpoint(lab: LabState, operator: int) -> Iterator[str]:
    endpoint = csi.start_controller(lab.env(), Path(lab.lab_dir))
    yield endpoint
    csi.stop_controller(Path(lab.lab_dir))


@pytest.fixture(scope="package")
def node_endpoint(lab: LabState, kvm_guest: LibvirtGuest) -> Iterator[str]:
    csi.start_node_service(kvm_guest, lab.node_endpoint)
    yield lab.node_endpoint
    csi.stop_node_service(kvm_guest)


@pytest.fixture(scope="package")
def services_env(lab: LabState, controller_endpoint: str, node_endpoint: str) -> dict[str, str]:
    """The endpoints and the guest's staging and target folders, as `.lab/env` names them."""
    env = csi.services_env(Path(lab.lab_dir), node_endpoint)
    assert env["LUNBRIDGE_CSI_CONTROLLER_ENDPOINT"] == controller_endpoint
    return env
