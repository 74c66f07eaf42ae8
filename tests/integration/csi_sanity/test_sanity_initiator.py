"""csi-sanity v5.5.0's Node Service specs against the node plugin in `initiator` mode: the KVM
guest runs iscsid with its own IQN and its node plugin logs in itself (`--attach-mode initiator`,
its LunbridgeNode published through the node channel). Its node_id is its Node name, so
ControllerPublishVolume finds the Node by name, the operator masks each volume to the guest's
own IQN, and NodeStageVolume logs in to that target, scans the LUN id, checks the NAA and
mounts. The run is focused on the node specs: the controller specs do not depend on the mode
and run in test_sanity.py."""

from __future__ import annotations

import subprocess
import xml.etree.ElementTree as ET
from collections.abc import Iterator
from pathlib import Path

import pytest

from tests.integration.csi_sanity.test_sanity import NOT_ADVERTISED
from tests.integration.operator import observe
from tests.lab import csi, iscsi
from tests.lab.lab import LabState, kubectl
from tests.lab.libvirt import LibvirtGuest


@pytest.fixture
def initiator_node(lab: LabState, kvm_guest: LibvirtGuest, node_endpoint: str) -> Iterator[str]:
    """The guest's node plugin in `initiator` mode until the test ends, then as before."""
    iscsi.start_iscsid(kvm_guest)
    csi.start_initiator_node_service(kvm_guest, lab)
    try:
        yield lab.guest_node
    finally:
        csi.stop_node_service(kvm_guest)
        kubectl(lab, "delete", "lbnode", lab.guest_node, "--ignore-not-found")
        iscsi.stop_iscsid(kvm_guest)
        csi.start_node_service(kvm_guest, node_endpoint)


def test_csi_sanity_node_specs_pass_in_initiator_mode(
    services_env: dict[str, str], lab: LabState, kvm_guest: LibvirtGuest, initiator_node: str, tmp_path: Path
) -> None:
    observe.wait_node_accepted(lab, initiator_node, iscsi.GUEST_IQN)
    report = tmp_path / "sanity.xml"
    argv = csi.sanity_argv(services_env, f"--ginkgo.junit-report={report}", "--ginkgo.focus=Node Service")
    result = subprocess.run(argv, capture_output=True, text=True, timeout=1200)
    assert result.returncode == 0, (
        f"{result.stdout[-6000:]}{result.stderr[-2000:]}\n"
        f"--- node service in the guest ---\n{csi.node_service_log(kvm_guest, 60)}"
    )
    outcomes: dict[str, list[str]] = {}
    for case in ET.parse(report).getroot().iter("testcase"):
        outcomes.setdefault(case.get("status", ""), []).append(case.get("name", ""))
        reason = case.find("skipped")
        why = reason.get("message", "") if reason is not None else ""
        if case.get("status") == "skipped" and why != "skipped":  # plain "skipped": not in the focus
            assert any(n in why for n in NOT_ADVERTISED), why
    print({status: len(names) for status, names in outcomes.items()})
    passed = " ".join(outcomes.get("passed", []))
    for spec in ("NodeStageVolume", "NodePublishVolume", "NodeExpandVolume", "NodeGetVolumeStats"):
        assert spec in passed, f"no {spec} spec passed"
    log = csi.node_service_log(kvm_guest, 400)
    assert "logged in to " in log, log[-3000:]  # the volumes came through the node's own login
    assert "logged out of " in log, log[-3000:]
    sessions = kvm_guest.run("ls /sys/class/iscsi_session", timeout=30).stdout.split()
    assert sessions == [], sessions  # every volume went, and with the last one the session
    assert not kubectl(lab, "get", "vdisk", "-o", "name").stdout.split()
