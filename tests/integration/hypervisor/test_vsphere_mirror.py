"""The inventory mirror against the lab's vCenter: once current it answers what vCenter
answers (VMs by UUID, the host a VM runs on, cluster members, initiators); a VM that moved, a
send target added and a VM made a moment ago reach it (or are read directly) without a
restart; and a session vCenter dropped is logged in again and the mirror catches up."""

from __future__ import annotations

import asyncio
import time
from collections.abc import AsyncIterator, Callable
from typing import Any

import pytest

from lunbridge.hypervisor.base import Host, Vm
from lunbridge.hypervisor.vsphere import VSphere, VSphereConfig
from lunbridge.hypervisor.vsphere.inventory import has_send_target
from lunbridge.hypervisor.vsphere.refs import parse_portal
from tests.integration.hypervisor.vcenter import WaitForTask, find, vim
from tests.lab import vcsim as vcsim_lab

SYNC_SECONDS = 10.0


@pytest.fixture
async def mirrored(config: VSphereConfig) -> AsyncIterator[VSphere]:
    """A client whose mirror is current."""
    client = await VSphere.connect(config)
    assert client.mirror is not None
    assert await asyncio.to_thread(client.mirror.synced.wait, SYNC_SECONDS), "the mirror never caught up"
    yield client
    await client.close()


@pytest.fixture
async def direct(config: VSphereConfig) -> AsyncIterator[VSphere]:
    client = await VSphere.connect(config, mirror=False)
    yield client
    await client.close()


async def eventually(probe: Callable[[], Any], what: str, within: float = 5.0) -> Any:
    deadline = time.monotonic() + within
    while not (found := probe()):
        assert time.monotonic() < deadline, f"not within {within}s: {what}"
        await asyncio.sleep(0.05)
    return found


def shape(host: Host) -> tuple[str, str, str | None]:
    return host.name, host.id, host.cluster


async def test_the_mirror_answers_what_vcenter_answers(
    mirrored: VSphere, direct: VSphere, vcsim: vcsim_lab.VcsimPeer
) -> None:
    mirror = mirrored.mirror
    assert mirror is not None
    for info in vcsim.inventory.vms:
        read = await direct.find_vm(f"vsphere://{info.bios_uuid}")
        assert mirror.vm_by_uuid(info.bios_uuid.upper(), bios_only=True) == read
        assert mirror.vm(info.moref) == read
        if info.instance_uuid:
            assert mirror.vm_by_uuid(info.instance_uuid, bios_only=False) == read
            assert mirror.vm_by_uuid(info.instance_uuid, bios_only=True) is None
    for host_info in vcsim.inventory.hosts:
        host = await direct.find_host(host_info.name)
        assert mirror.host_named(host_info.name) == host
        assert mirror.cluster_hosts(host.id) == await direct.cluster_hosts(host)
        assert await mirrored.host_initiators(host) == await direct.host_initiators(host)


async def test_a_vm_that_moved_is_seen_on_its_new_host(
    mirrored: VSphere, si: Any, vcsim: vcsim_lab.VcsimPeer, scratch_vm: Callable[..., str]
) -> None:
    clustered = [h for h in vcsim.inventory.hosts if h.cluster]
    source = clustered[0]
    dest = next(h for h in clustered if h.cluster == source.cluster and h.name != source.name)
    name = scratch_vm(source.name, boot_disk=False)
    vm_obj = find(si, vim.VirtualMachine, name)
    uuid = vm_obj.config.uuid
    found: Vm = await mirrored.find_vm(f"vsphere://{uuid}")  # made a moment ago: found either way
    assert found.host.name == source.name
    WaitForTask(vm_obj.RelocateVM_Task(spec=vim.vm.RelocateSpec(host=find(si, vim.HostSystem, dest.name))))
    mirror = mirrored.mirror
    assert mirror is not None
    moved = await eventually(
        lambda: (vm := mirror.vm(found.id)) is not None and vm.host.name == dest.name and vm,
        f"the mirror sees {name} on {dest.name}",
    )
    assert (await mirrored.find_vm(f"vsphere://{uuid}")).host == moved.host


async def test_a_send_target_added_in_vcenter_reaches_the_mirror(
    mirrored: VSphere, si: Any, vcsim: vcsim_lab.VcsimPeer
) -> None:
    info = vcsim.inventory.hosts[0]
    host = await mirrored.find_host(info.name)
    portal = parse_portal("127.0.0.77:3260")
    mirror = mirrored.mirror
    assert mirror is not None
    assert not has_send_target(mirror.adapters(host.id) or [], portal)
    storage = find(si, vim.HostSystem, info.name).configManager.storageSystem
    target = vim.host.InternetScsiHba.SendTarget(address="127.0.0.77", port=3260)
    storage.AddInternetScsiSendTargets(iScsiHbaDevice=info.iscsi_device, targets=[target])
    try:
        await eventually(lambda: has_send_target(mirror.adapters(host.id) or [], portal), "the send target")
    finally:
        storage.RemoveInternetScsiSendTargets(iScsiHbaDevice=info.iscsi_device, targets=[target])
    await eventually(lambda: not has_send_target(mirror.adapters(host.id) or [], portal), "its removal")


async def test_a_session_vcenter_dropped_is_renewed_and_the_mirror_catches_up(
    mirrored: VSphere, si: Any, vcsim: vcsim_lab.VcsimPeer
) -> None:
    mirror = mirrored.mirror
    assert mirror is not None
    key = await mirrored.session.run(
        "read the session", lambda api: api.content.sessionManager.currentSession.key
    )
    si.content.sessionManager.TerminateSession(sessionId=[key])
    # any change ends the mirror's long poll; its next one finds the session gone
    info = vcsim.inventory.hosts[0]
    storage = find(si, vim.HostSystem, info.name).configManager.storageSystem
    target = vim.host.InternetScsiHba.SendTarget(address="127.0.0.78", port=3260)
    storage.AddInternetScsiSendTargets(iScsiHbaDevice=info.iscsi_device, targets=[target])
    storage.RemoveInternetScsiSendTargets(iScsiHbaDevice=info.iscsi_device, targets=[target])
    await eventually(lambda: mirrored.session.logins == 2, "a second login", within=SYNC_SECONDS)
    assert await asyncio.to_thread(mirror.synced.wait, SYNC_SECONDS)
    vm_info = vcsim.inventory.vms[0]
    await eventually(lambda: mirror.vm(vm_info.moref) is not None, "the mirror answering again")
    assert (await mirrored.find_vm(f"vsphere://{vm_info.bios_uuid}")).id == vm_info.moref
