"""The node's attachment mode and its own initiators, over fixture trees: a guest lunbridge can
name is `hypervisor`, anything else `initiator` (bare metal, an unnamed guest), configuration
forces either; the IQN comes from open-iscsi's initiatorname file, the WWPNs from fc_host."""

from __future__ import annotations

from pathlib import Path

import pytest

from lunbridge.errors import InvalidArgument
from lunbridge.models import AttachMode
from lunbridge_csi.guest.initiators import (
    decide_mode,
    fc_port_names,
    iscsi_initiator_name,
    node_initiators,
    publication,
)
from tests.unit.test_detect import BARE_CPU, dmi, tree

KVM_GUEST = dmi(sys_vendor="QEMU", product_uuid="8f2c1d44-5b6a-4c3e-9d2f-0123456789ab")
BARE_METAL = {**dmi(sys_vendor="Dell Inc.", product_name="PowerEdge R650"), **BARE_CPU}


def test_a_guest_lunbridge_can_name_takes_luns_from_its_hypervisor(tmp_path: Path) -> None:
    decided = decide_mode(tree(tmp_path, KVM_GUEST))
    assert decided.mode is AttachMode.HYPERVISOR
    assert "libvirt://8f2c1d44" in decided.reason


def test_bare_metal_and_unnamed_guests_log_in_themselves(tmp_path: Path) -> None:
    assert decide_mode(tree(tmp_path / "a", BARE_METAL)).mode is AttachMode.INITIATOR
    hyperv = dmi(sys_vendor="Microsoft Corporation", product_name="Virtual Machine")
    decided = decide_mode(tree(tmp_path / "b", hyperv))
    assert decided.mode is AttachMode.INITIATOR
    assert "cannot name" in decided.reason


def test_configuration_forces_either_mode_and_a_bad_value_is_named(tmp_path: Path) -> None:
    root = tree(tmp_path, KVM_GUEST)
    assert decide_mode(root, "initiator").mode is AttachMode.INITIATOR
    assert decide_mode(tree(tmp_path / "m", BARE_METAL), "hypervisor").mode is AttachMode.HYPERVISOR
    with pytest.raises(InvalidArgument, match="--attach-mode 'iscsi' is not one of auto, hypervisor"):
        decide_mode(root, "iscsi")


def test_the_iqn_comes_from_open_iscsis_file(tmp_path: Path) -> None:
    text = (
        "## DO NOT EDIT\n#InitiatorName=iqn.2000-01.old:x\n"
        "InitiatorName=iqn.2004-10.com.ubuntu:01:9c3a5d2e1f\n"
    )
    root = tree(tmp_path, {"etc/iscsi/initiatorname.iscsi": text})
    assert iscsi_initiator_name(root) == "iqn.2004-10.com.ubuntu:01:9c3a5d2e1f"
    assert iscsi_initiator_name(tmp_path / "none") is None  # open-iscsi not installed
    bad = tree(tmp_path / "bad", {"etc/iscsi/initiatorname.iscsi": "InitiatorName=node-1"})
    with pytest.raises(InvalidArgument, match=r"initiatorname\.iscsi: 'node-1' is not an iSCSI name"):
        iscsi_initiator_name(bad)


def test_wwpns_come_from_every_fc_host_and_a_bad_one_is_skipped(tmp_path: Path) -> None:
    root = tree(tmp_path, {
        "sys/class/fc_host/host3/port_name": "0x21000024ff4b6a01",
        "sys/class/fc_host/host2/port_name": "0x21000024FF4B6A00",
        "sys/class/fc_host/host4/port_name": "unknown",
    })  # fmt: skip
    assert fc_port_names(root) == ("21:00:00:24:ff:4b:6a:00", "21:00:00:24:ff:4b:6a:01")
    found = node_initiators(root)
    assert (found.iqn, len(found.wwpns), found.empty) == (None, 2, False)
    assert node_initiators(tmp_path / "nothing").empty


def test_the_publication_reads_the_initiators_anew_each_time(tmp_path: Path) -> None:
    root = tree(
        tmp_path, {**BARE_METAL, "etc/iscsi/initiatorname.iscsi": "InitiatorName=iqn.2004-10.org.x:a"}
    )
    spec = publication(root)
    assert spec() == {
        "mode": "initiator",
        "reason": spec()["reason"],
        "iqn": "iqn.2004-10.org.x:a",
        "wwpns": [],
    }
    (root / "etc/iscsi/initiatorname.iscsi").write_text("InitiatorName=iqn.2004-10.org.x:b\n")
    assert spec()["iqn"] == "iqn.2004-10.org.x:b"
