"""Fixtures of the generated-input tests: the real operator (its own log file, so its
tracebacks are this package's), the CSI controller service against the lab (the fixtures of
tests/integration/csi_controller), and a Node service on this machine that reaches no disk
(`node_server`)."""

from __future__ import annotations

import sys
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import grpc
import pytest

from lunbridge_csi._proto import csi_pb2_grpc
from tests.integration.csi_controller.conftest import channel, controller, endpoint  # noqa: F401
from tests.integration.hypervisor.vcenter import forget_portal
from tests.lab import csi, procs
from tests.lab import operator as operator_lab
from tests.lab import vcsim as vcsim_lab
from tests.lab.lab import LabState

OPERATOR = "operator-generated"
NODE = "csi-node-generated"


@pytest.fixture(scope="package")
def operator(lab: LabState) -> Iterator[int]:
    """`lunbridge-operator` for the package, logging to `operator-generated.log` in the lab."""
    pid = operator_lab.start(lab, name=OPERATOR)
    yield pid
    operator_lab.stop(lab, name=OPERATOR)


@pytest.fixture(scope="package")
def operator_log(lab: LabState, operator: int) -> Path:
    return procs.log_file(Path(lab.lab_dir), OPERATOR)


@pytest.fixture(scope="package", autouse=True)
def _hosts_left_as_found(lab: LabState, si: Any, vcsim: vcsim_lab.VcsimPeer) -> Iterator[None]:
    yield
    forget_portal(si, vcsim.inventory, lab.tgt.port)


@pytest.fixture(scope="package")
def node_scratch(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """The node service's folders: root/ (no disks), state/, cwd/ (its working folder, with a
    file at `relative/path` that a relative path would reach) and commands.jsonl."""
    scratch = tmp_path_factory.mktemp("csi-node")
    (scratch / "cwd" / "relative").mkdir(parents=True)
    (scratch / "cwd" / "relative" / "path").write_text("bait")
    return scratch


@pytest.fixture(scope="package")
def node(lab: LabState, node_scratch: Path) -> Iterator[Any]:
    """A Node service stub; the service runs on this machine against `node_scratch`."""
    lab_dir = Path(lab.lab_dir)
    port = procs.free_port()
    script = Path(__file__).with_name("node_server.py")
    argv = [sys.executable, str(script), "--port", str(port), "--scratch", str(node_scratch)]
    procs.spawn(lab_dir, NODE, argv, cwd=node_scratch / "cwd")
    try:
        csi.wait_ready(f"127.0.0.1:{port}", 30)
    except procs.LabError:
        procs.stop(lab_dir, NODE)
        raise
    with grpc.insecure_channel(f"127.0.0.1:{port}") as opened:
        yield csi_pb2_grpc.NodeStub(opened)  # type: ignore[no-untyped-call]
    procs.stop(lab_dir, NODE, timeout=10)
