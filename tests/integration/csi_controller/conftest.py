"""The CSI controller service against the lab: the real operator (`tests.lab.operator`), and
`lunbridge-csi --mode controller` started as a user would (the lab's environment), served on a
TCP loopback port and driven with the generated gRPC stubs."""

from __future__ import annotations

import json
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import grpc
import pytest

from lunbridge_csi._proto import csi_pb2_grpc
from tests.integration.hypervisor.vcenter import forget_portal
from tests.integration.operator.conftest import nodes  # noqa: F401 - Nodes a test made, deleted after it
from tests.lab import csi, procs
from tests.lab import operator as operator_lab
from tests.lab import vcsim as vcsim_lab
from tests.lab.lab import LabState, kubectl

NAME = "csi-controller"


@pytest.fixture(scope="package")
def operator(lab: LabState) -> Iterator[int]:
    pid = operator_lab.start(lab)
    yield pid
    operator_lab.stop(lab)


@pytest.fixture(scope="package", autouse=True)
def _hosts_left_as_found(lab: LabState, si: Any, vcsim: vcsim_lab.VcsimPeer) -> Iterator[None]:
    yield
    forget_portal(si, vcsim.inventory, lab.tgt.port)


@pytest.fixture(scope="package")
def endpoint(lab: LabState, operator: int) -> Iterator[str]:
    """`lunbridge-csi --mode controller` on a free loopback port; its address (host:port)."""
    lab_dir = Path(lab.lab_dir)
    address = f"127.0.0.1:{procs.free_port()}"
    csi.start_plugin(lab.env(), lab_dir, f"tcp://{address}", "--mode", "controller", name=NAME)
    yield address
    procs.stop(lab_dir, NAME, timeout=15)


@pytest.fixture(scope="package")
def channel(endpoint: str) -> Iterator[grpc.Channel]:
    with grpc.insecure_channel(endpoint) as opened:
        yield opened


@pytest.fixture(scope="package")
def controller(channel: grpc.Channel) -> Any:
    return csi_pb2_grpc.ControllerStub(channel)  # type: ignore[no-untyped-call]


@pytest.fixture(scope="package")
def identity(channel: grpc.Channel) -> Any:
    return csi_pb2_grpc.IdentityStub(channel)  # type: ignore[no-untyped-call]


@pytest.fixture
def volumes(lab: LabState) -> Iterator[list[str]]:
    """VirtualDisk names (volume ids) a test made; after it, deleted (nodeName cleared first),
    and waited for until the operator let them go."""
    made: list[str] = []
    yield made
    for name in made:
        patch = json.dumps({"spec": {"nodeName": None}})
        kubectl(lab, "patch", "vdisk", name, "--type=merge", "-p", patch)
        kubectl(lab, "delete", "vdisk", name, "--ignore-not-found", "--wait=false")
    deadline = time.monotonic() + 120
    left = list(made)
    while left and time.monotonic() < deadline:
        left = [n for n in left if kubectl(lab, "get", "vdisk", n, "--ignore-not-found", "-o", "name").stdout]
        time.sleep(0.5)
    for name in left:
        kubectl(
            lab, "patch", "vdisk", name, "--type=merge", "-p", json.dumps({"metadata": {"finalizers": None}})
        )
    assert not left, f"VirtualDisks not deleted within 120s: {left}"
