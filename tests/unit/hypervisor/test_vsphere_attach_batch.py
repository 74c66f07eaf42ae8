"""RDM attaches queued on one VM, with fakes instead of a vCenter: one reconfigure for all of
them; a reconfigure vCenter refuses is tried again disk by disk (each disk gets its own
answer), while one that outlived its time limit is not (it may still add them all): every
disk of it gets that error, and the VM is not reconfigured again meanwhile."""

from __future__ import annotations

import asyncio
from typing import Any

import pytest

from lunbridge.errors import Conflict, LunbridgeError
from lunbridge.hypervisor.base import Host, Vm
from lunbridge.hypervisor.vsphere import VSphere, VSphereConfig, rdm
from lunbridge.hypervisor.vsphere.rdm import HostLun
from lunbridge.hypervisor.vsphere.session import TaskStillRunning
from lunbridge.hypervisor.vsphere.slots import Controller, Device, Rdm, Slot, VmDevices

CONFIG = VSphereConfig(url="https://vc.example.com/sdk", username="svc", password="pw", insecure=True)
HOST = Host(id="host-1", name="esx1", cluster=None)
VM = Vm(name="vm1", id="vm-1", bios_uuid="u1", instance_uuid=None, host=HOST)
PV0 = Controller(key=1000, bus=0, paravirtual=True)
Placed = list[tuple[Slot, HostLun]]
NAAS = [f"naa.600a00000000000000000000000000{i:02d}" for i in range(1, 4)]


class FakeVm:
    """A VM's RDMs, and its reconfigures: each records the LUNs it adds, then fails with the
    error `fail` names for exactly those LUNs, or adds them."""

    def __init__(self) -> None:
        self.rdms: list[Rdm] = []
        self.reconfigures: list[list[str]] = []
        self.fail: dict[frozenset[str], LunbridgeError] = {}

    def devices(self) -> VmDevices:
        units = tuple(Device(r.key, r.controller_key, r.unit) for r in self.rdms)
        return VmDevices((PV0,), units, tuple(self.rdms))

    def add_rdms(
        self, api: Any, vm_id: str, placed: list[tuple[Slot, HostLun]]
    ) -> list[tuple[Slot, HostLun]]:
        self.reconfigures.append(sorted(lun.canonical_name for _, lun in placed))
        return placed  # the "task"

    def finish(self, placed: Placed) -> None:
        error = self.fail.get(frozenset(lun.canonical_name for _, lun in placed))
        if error is not None:
            raise error
        for slot, lun in placed:
            path = f"/vmfs/devices/disks/{lun.canonical_name}"
            self.rdms.append(
                Rdm(2000 + len(self.rdms), slot.controller_key, slot.unit, path, "", "physicalMode")
            )


@pytest.fixture
def fake(monkeypatch: pytest.MonkeyPatch) -> FakeVm:
    made = FakeVm()
    monkeypatch.setattr(rdm, "add_rdms", made.add_rdms)
    return made


def vsphere_on(fake: FakeVm) -> VSphere:
    client = VSphere(CONFIG, mirror=False)

    async def refresh(vm: Vm) -> Vm:
        return vm

    async def visible(host: Host, naa: str) -> HostLun:
        return HostLun(naa, naa.removeprefix("naa."), f"/vmfs/devices/disks/{naa}", None)

    async def devices(vm: Vm) -> VmDevices:
        return fake.devices()

    async def run(what: str, step: Any) -> Any:
        return step(None)

    async def wait_task(task: Any, what: str) -> None:
        fake.finish(task)

    client._refresh = refresh  # type: ignore[method-assign]
    client._visible_lun = visible  # type: ignore[method-assign]
    client._devices = devices  # type: ignore[method-assign]
    client.session.run = run  # type: ignore[method-assign]
    client.session.wait_task = wait_task  # type: ignore[method-assign]
    return client


async def queued(client: VSphere) -> list[Any]:
    """Attach every LUN of NAAS while the VM is held, as when another change of it runs."""
    async with client._lock(VM):
        tasks = [asyncio.create_task(client.attach_rdm(VM, naa)) for naa in NAAS]
        for _ in range(100):
            await asyncio.sleep(0)
    return await asyncio.gather(*tasks, return_exceptions=True)


async def test_queued_attaches_go_in_one_reconfigure(fake: FakeVm) -> None:
    done = await queued(vsphere_on(fake))
    assert fake.reconfigures == [sorted(NAAS)]
    assert sorted((a.controller_key, a.unit_number) for a in done) == [(1000, 0), (1000, 1), (1000, 2)]


async def test_a_refused_reconfigure_is_tried_again_disk_by_disk(fake: FakeVm) -> None:
    fake.fail[frozenset(NAAS)] = Conflict("vCenter refused the reconfigure")
    fake.fail[frozenset(NAAS[1:2])] = Conflict(f"LUN {NAAS[1]} is not visible on host esx1")
    done = await queued(vsphere_on(fake))
    assert fake.reconfigures == [sorted(NAAS), [NAAS[0]], [NAAS[1]], [NAAS[2]]]
    assert isinstance(done[1], Conflict)
    assert NAAS[1] in str(done[1])
    assert [a.naa for a in (done[0], done[2])] == [NAAS[0], NAAS[2]]


async def test_a_reconfigure_that_outlived_its_limit_is_not_tried_again(fake: FakeVm) -> None:
    fake.fail[frozenset(NAAS)] = TaskStillRunning(
        "cannot attach: vCenter task task-9 is still running after 600s"
    )
    done = await queued(vsphere_on(fake))
    assert fake.reconfigures == [sorted(NAAS)]
    assert all(isinstance(r, TaskStillRunning) for r in done), done
