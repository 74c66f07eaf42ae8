"""Disks of nodes that log in with their own initiators, through the real reconcile steps on the
fakes: the map to an igroup of exactly the node's accepted IQN, no hypervisor call, an
attachment that tells the node where to log in; a node refused its IQN gets nothing; a disk
moving between a guest and such a node leaves the old side clean; CHAP from the backend's
Secret reaches node igroups only; the InitiatorGroup of a node follows its published IQN."""

from __future__ import annotations

from pathlib import Path

import pytest

from lunbridge import redact
from lunbridge.models import AttachMode, ConditionType, InitiatorGroup, OsType, Phase, PublishContext
from lunbridge.storage.base import Chap
from lunbridge.storage.factory import Backends
from lunbridge_operator.reconcile import initiatorgroup
from tests.fakes import Lab

BARE_IQN = "iqn.2026-11.io.lab:bare-1"
OTHER_IQN = "iqn.2026-11.io.lab:bare-2"
HYPERVISOR_CALLS = {"find_vm", "attach_rdm", "detach_rdm", "rescan", "vm_initiators", "add_send_target"}


def hypervisor_calls(lab: Lab) -> list[str]:
    return [c.method for c in lab.hypervisor.calls if c.method in HYPERVISOR_CALLS]


async def test_a_disk_on_an_initiator_node_is_mapped_to_its_own_iqn_and_no_hypervisor_is_asked() -> None:
    lab = Lab.build()
    await lab.publish_node("bare-1", BARE_IQN)
    disk = await lab.create_disk("d1", node_name="bare-1")
    lun = lab.lun("d1")
    assert disk.status.phase is Phase.READY, disk.status.message
    igroup = lab.storage.igroups["node-bare-1"]
    assert (igroup.initiators, igroup.os_type) == ((BARE_IQN,), OsType.LINUX)
    group = InitiatorGroup.from_dict(lab.kube.read("initiatorgroups", "node-bare-1"))
    assert group.managed
    assert group.spec.node_names == ["bare-1"]
    assert group.spec.hosts == []
    [mapping] = lab.storage.maps
    assert (mapping.lun, mapping.igroup) == (lun.name, "node-bare-1")
    assert hypervisor_calls(lab) == []
    attachment = disk.status.attachment
    assert attachment is not None
    assert attachment.mode is AttachMode.INITIATOR
    assert (attachment.node, attachment.vm, attachment.provider_id) == ("bare-1", None, None)
    assert PublishContext.from_status(disk.status) == PublishContext(
        AttachMode.INITIATOR, lun.naa, target_iqn=lab.storage.target_prefix + "node-bare-1",
        portals=(lab.storage.portal,), lun_id=mapping.lun_id,
    )  # fmt: skip
    for kind in (ConditionType.READY, ConditionType.MAPPED, ConditionType.ATTACHED):
        assert disk.status.is_true(kind, generation=1), kind
    assert disk.status.condition(ConditionType.CLUSTER_READY) is None
    assert lab.operator.reasons("d1") == ["Provisioned", "Mapped", "Attached"]

    await lab.delete("d1")
    assert lab.storage.maps == []
    assert lab.storage.luns == {}
    assert hypervisor_calls(lab) == []


async def test_a_node_refused_its_iqn_gets_no_map_and_the_disk_says_who_owns_it() -> None:
    lab = Lab.build()
    await lab.publish_node("bare-1", BARE_IQN, created="2026-11-29T10:00:00Z")
    await lab.publish_node("bare-2", BARE_IQN, created="2026-11-29T10:00:05Z")  # a copied image
    disk = await lab.create_disk("d1", node_name="bare-2")
    assert disk.status.phase is not Phase.READY
    ready = disk.status.condition(ConditionType.READY)
    assert ready is not None
    assert ready.status.value == "False"
    assert f"{BARE_IQN} (node bare-1)" in ready.message
    assert "InitiatorClaimed" in ready.message
    assert lab.storage.maps == []
    assert "node-bare-2" not in lab.storage.igroups


async def test_a_node_that_publishes_no_iqn_is_told_what_to_install() -> None:
    lab = Lab.build()
    await lab.publish_node("bare-1", None)
    disk = await lab.create_disk("d1", node_name="bare-1")
    ready = disk.status.condition(ConditionType.READY)
    assert ready is not None
    assert "publishes no IQN (/etc/iscsi/initiatorname.iscsi)" in ready.message


async def test_moving_between_a_guest_and_an_initiator_node_leaves_the_old_side_clean() -> None:
    lab = Lab.build()
    await lab.publish_node("bare-1", BARE_IQN)
    await lab.create_disk("d1", node_name="node-a")
    assert len(lab.rdms("node-a")) == 1
    disk = await lab.patch("d1", node_name="bare-1")
    assert disk.status.phase is Phase.READY, disk.status.message
    assert lab.rdms("node-a") == []
    assert [m.igroup for m in lab.storage.maps] == ["node-bare-1"]
    assert disk.status.attachment is not None
    assert disk.status.attachment.mode is AttachMode.INITIATOR

    disk = await lab.patch("d1", node_name="node-c")  # and back to a guest
    assert disk.status.phase is Phase.READY, disk.status.message
    assert [m.igroup for m in lab.storage.maps] == ["host-esx-3"]
    assert disk.status.attachment is not None
    assert disk.status.attachment.mode is AttachMode.HYPERVISOR
    assert len(lab.rdms("node-c")) == 1

    disk = await lab.patch("d1", node_name=None)
    assert lab.storage.maps == []
    assert disk.status.attachment is None


def _chap_dir(tmp_path: Path, **keys: str) -> Path:
    folder = tmp_path / "chap"
    folder.mkdir()
    for key, value in keys.items():
        (folder / f"node.session.auth.{key}").write_text(value + "\n")
    return folder


async def test_chap_of_the_backends_secret_reaches_node_igroups_only(tmp_path: Path) -> None:
    lab = Lab.build()
    folder = _chap_dir(tmp_path, username="node-user", password="a-long-secret-1",
                       username_in="target-user", password_in="another-secret-2")  # fmt: skip
    lab.services.backends = Backends(dict(lab.storages), "lab", {"lab": folder})
    await lab.publish_node("bare-1", BARE_IQN)
    await lab.create_disk("d1", node_name="bare-1")
    await lab.create_disk("d2", node_name="node-a")
    assert lab.storage.chap == {
        "node-bare-1": Chap("node-user", "a-long-secret-1", "target-user", "another-secret-2")
    }
    assert "a-long-secret-1" not in repr(lab.storage.chap)

    (folder / "node.session.auth.password").write_text("short")  # a bad rotation
    await lab.operator.recheck("d1")
    ready = lab.disk("d1").status.condition(ConditionType.READY)
    assert ready is not None
    assert "node.session.auth.password must be at least 12 bytes" in ready.message
    assert "short" not in ready.message


@pytest.mark.parametrize(
    ("keys", "said"),
    [
        ({"password": "a-long-secret-1"}, "lacks node.session.auth.username"),
        ({"username": "u"}, "lacks node.session.auth.password"),
        ({"username": "u", "password": "with space secret"}, "password must be at most 255 bytes, printable"),
        ({"username": "u", "password": "a-long-secret-1", "username_in": "t"},
         "lacks node.session.auth.password_in"),
        ({"username": "u", "password": "a-long-secret-1", "username_in": "t",
          "password_in": "a-long-secret-1"}, "password_in must differ"),
    ],
)  # fmt: skip
def test_a_bad_chap_secret_names_the_key_and_never_the_value(
    keys: dict[str, str], said: str, tmp_path: Path
) -> None:
    from lunbridge.errors import InvalidArgument
    from lunbridge.storage import chap

    with pytest.raises(InvalidArgument, match=said) as caught:
        chap.from_folder(_chap_dir(tmp_path, **keys))
    for value in keys.values():
        if len(value) >= redact.MIN_REGISTERED:
            assert value not in str(caught.value)


async def test_the_initiator_group_of_a_node_follows_the_iqn_it_publishes() -> None:
    lab = Lab.build()
    await lab.publish_node("bare-1", BARE_IQN)
    await lab.create_disk("d1", node_name="bare-1")
    group = InitiatorGroup.from_dict(lab.kube.read("initiatorgroups", "node-bare-1"))
    assert [(r.host, r.address) for r in group.status.initiators] == [("bare-1", BARE_IQN)]
    assert group.status.hosts == []

    await lab.publish_node("bare-1", OTHER_IQN)  # its initiator name was changed
    group = InitiatorGroup.from_dict(lab.kube.read("initiatorgroups", "node-bare-1"))
    await initiatorgroup.reconcile(lab.services, group.name, group.metadata.generation, group.spec,
                                   group.status, lambda *a, **k: None)  # fmt: skip
    assert lab.storage.igroups["node-bare-1"].initiators == (OTHER_IQN,)
    assert hypervisor_calls(lab) == []


def test_chap_values_are_read_alike_on_both_ends_and_a_lone_key_is_refused() -> None:
    from lunbridge.errors import InvalidArgument
    from lunbridge.storage import chap

    # a Secret made from files ends its values in a newline; the operator's folder and the
    # kubelet's node-stage secrets must read the same CHAP from it
    given = {"node.session.auth.username": "u\n", "node.session.auth.password": "a-long-secret-1\n"}
    assert chap.from_values(given) == Chap("u", "a-long-secret-1")
    assert chap.from_values({"node.session.auth.username": "u",
                             "node.session.auth.password": "ééééééé"}) is not None  # 14 bytes  # fmt: skip
    with pytest.raises(InvalidArgument, match=r"lacks node\.session\.auth\.username"):
        chap.from_values({"node.session.auth.password_in": "a-long-secret-1"})
