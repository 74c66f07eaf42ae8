"""The inventory mirror's rules without a vCenter: update sets applied as vCenter sends them
(enter, modify, leave, a property removed), questions answered from what was applied, and
None (so the caller asks vCenter) whenever the mirror is not current or does not know."""

from __future__ import annotations

from types import SimpleNamespace
from typing import Any

from lunbridge.hypervisor.base import Host, Vm
from lunbridge.hypervisor.vsphere._vmomi import vim
from lunbridge.hypervisor.vsphere.inventory import has_send_target
from lunbridge.hypervisor.vsphere.mirror import InventoryMirror, apply_update, empty, placement_changed
from lunbridge.hypervisor.vsphere.refs import parse_portal

BIOS = "4211aaaa-0000-0000-0000-000000000001"


def change(obj: Any, kind: str = "enter", **props: Any) -> Any:
    """An `ObjectUpdate` as pyVmomi decodes one (`a__b` names property path `a.b`)."""
    return SimpleNamespace(
        obj=obj,
        kind=kind,
        changeSet=[
            SimpleNamespace(
                name=name.replace("__", "."), op="remove" if value is None else "assign", val=value
            )
            for name, value in props.items()
        ],
    )


def update_set(*changes: Any) -> Any:
    return SimpleNamespace(filterSet=[SimpleNamespace(objectSet=list(changes))])


def iscsi(device: str, iqn: str, *portals: str) -> Any:
    return vim.host.InternetScsiHba(
        device=device,
        iScsiName=iqn,
        configuredSendTarget=[vim.host.InternetScsiHba.SendTarget(address=p, port=3260) for p in portals],
    )


def lab() -> InventoryMirror:
    """Two clustered hosts and a standalone one, a VM on the first, applied as one update."""
    objects = empty()
    cluster = vim.ClusterComputeResource("domain-c1")
    h1, h2, h3 = vim.HostSystem("host-1"), vim.HostSystem("host-2"), vim.HostSystem("host-3")
    hba = iscsi("vmhba64", "iqn.1998-01.com.vmware:esx-1", "10.0.0.1")
    system = vim.host.StorageSystem("ss-1")
    apply_update(
        objects,
        update_set(
            change(cluster, name="C1", host=[h2, h1]),
            change(h1, name="esx-1", parent=cluster, configManager__storageSystem=system,
                   config__storageDevice__hostBusAdapter=[hba]),
            change(h2, name="esx-2", parent=cluster),
            change(h3, name="esx-3", parent=vim.ComputeResource("domain-s3")),
            change(vim.VirtualMachine("vm-1"), name="node-a", config__uuid=BIOS.upper(),
                   config__instanceUuid="5011", runtime__host=h1),
        ),
    )  # fmt: skip
    mirror = InventoryMirror(session=None)  # type: ignore[arg-type]
    mirror._swap_in(objects)
    return mirror


ESX1 = Host("esx-1", "host-1", "C1")


def test_questions_are_answered_from_what_was_applied() -> None:
    mirror = lab()
    vm = Vm("node-a", "vm-1", BIOS, "5011", ESX1)
    assert mirror.vm("vm-1") == vm
    assert mirror.vm_by_uuid(BIOS.upper(), bios_only=True) == vm
    assert mirror.vm_by_uuid("5011", bios_only=False) == vm
    assert mirror.vm_by_uuid("5011", bios_only=True) is None
    assert mirror.cluster_hosts("host-2") == [ESX1, Host("esx-2", "host-2", "C1")]
    assert mirror.cluster_hosts("host-3") == [Host("esx-3", "host-3", None)]
    assert mirror.host_named("esx-3") == Host("esx-3", "host-3", None)
    assert mirror.storage_system("host-1") == "ss-1"
    assert has_send_target(mirror.adapters("host-1") or [], parse_portal("10.0.0.1:3260"))
    assert not has_send_target(mirror.adapters("host-1") or [], parse_portal("10.0.0.2:3260"))


def test_what_the_mirror_does_not_know_is_none_so_vcenter_is_asked() -> None:
    mirror = lab()
    assert mirror.vm("vm-404") is None
    assert mirror.vm_by_uuid("4211ffff-0000-0000-0000-000000000000", bios_only=False) is None
    assert mirror.adapters("host-2") is None  # never reported: not the same as no adapters
    assert mirror.storage_system("host-3") is None
    assert mirror.host_named("esx-9") is None


def test_a_mirror_that_is_not_current_answers_nothing() -> None:
    mirror = lab()
    mirror._forget()
    assert not mirror.synced.is_set()
    assert mirror.vm("vm-1") is None
    assert mirror.cluster_hosts("host-1") is None
    assert mirror.host_named("esx-1") is None


def test_a_move_a_removed_property_and_a_host_that_left_are_applied() -> None:
    mirror = lab()
    h2 = vim.HostSystem("host-2")
    with mirror._lock:
        apply_update(
            mirror._objects, update_set(change(vim.VirtualMachine("vm-1"), "modify", runtime__host=h2))
        )
    moved = mirror.vm("vm-1")
    assert moved is not None
    assert moved.host == Host("esx-2", "host-2", "C1")
    with mirror._lock:
        apply_update(
            mirror._objects, update_set(change(vim.VirtualMachine("vm-1"), "modify", runtime__host=None))
        )
    assert mirror.vm("vm-1") is None  # no host: vCenter is asked (and says why)
    with mirror._lock:
        apply_update(mirror._objects, update_set(change(h2, "leave")))
    assert mirror.host_named("esx-2") is None
    assert mirror.cluster_hosts("host-1") is None  # a member is unknown: ask vCenter


def test_a_vm_move_or_a_cluster_host_change_is_told_and_nothing_else() -> None:
    """What wakes the operator's re-check at once (`placement_changed`): a VM on another host, a
    host added or removed, a cluster's host list; not a VM renamed or a host's adapters."""
    cluster, host, vm = (
        vim.ClusterComputeResource("domain-c1"),
        vim.HostSystem("host-9"),
        vim.VirtualMachine("vm-1"),
    )
    told = [
        update_set(change(vm, "modify", runtime__host=host)),
        update_set(change(host, "enter", name="esx-9")),
        update_set(change(host, "leave")),
        update_set(change(cluster, "modify", host=[host])),
    ]
    quiet = [
        update_set(change(vm, "modify", name="renamed")),
        update_set(change(host, "modify", config__storageDevice__hostBusAdapter=[])),
        update_set(change(vm, "enter", name="new", runtime__host=host)),  # a new VM: not a move
    ]
    assert [placement_changed(u) for u in told] == [True] * len(told)
    assert [placement_changed(u) for u in quiet] == [False] * len(quiet)
