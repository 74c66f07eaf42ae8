"""The two states a user checks after the operator worked, each read from every peer: a disk
held exactly once (one LUN, one map, one LU, one RDM, where status says), and a disk of
which nothing is left (or, with Retain, only the LUN)."""

from __future__ import annotations

from collections.abc import Iterable
from typing import Any

from lunbridge.models import AttachMode, VirtualDiskStatus
from tests.integration.operator import observe
from tests.lab.lab import LabState


def exactly_one(lab: LabState, si: Any, disk: dict[str, Any], vm_names: Iterable[str]) -> None:
    """The disk's LUN exists once in the backend and its pool, is mapped once, served by one LU
    of its igroup's target, and attached as one RDM at the place status names."""
    typed = VirtualDiskStatus.from_dict(disk["status"])
    assert typed.attachment is not None
    assert typed.attachment.mode is AttachMode.HYPERVISOR
    attachment, detail = typed.attachment, typed.attachment.detail
    lun, igroup = disk["status"]["lun"], str(typed.initiator_group)
    naa: str = lun["naa"]
    state = observe.backend_state(lab)
    same_naa = [name for name, rec in state["luns"].items() if f"naa.{rec['naa']}" == naa]
    assert same_naa == [lun["name"]], f"LUNs with {naa} in the backend: {same_naa}"
    maps = [(m["igroup"], m["lun_id"]) for m in state["maps"] if m["lun"] == lun["name"]]
    assert maps == [(igroup, lun["id"])]
    assert f"{lun['name']}.img" in observe.pool_files(lab)

    served = observe.lus_with(lab.tgt, naa)
    assert [(target, lu.number) for target, lu in served] == [(observe.TARGET_PREFIX + igroup, lun["id"])]
    assert served[0][1].serial == lun["serial"]

    attached = [r for vm in vm_names for r in observe.rdms(si, vm) if r.device.endswith(naa)]
    assert len(attached) == 1, f"RDMs of {naa}: {attached}"
    rdm = attached[0]
    assert rdm.vm == attachment.vm
    assert (rdm.controller_key, rdm.bus, rdm.unit, rdm.key) == (
        detail["controllerKey"],
        detail["busNumber"],
        detail["unitNumber"],
        detail["diskKey"],
    )
    assert attachment.guest_address == f"0:{rdm.unit}:0"  # PVSCSI: target = unit, LUN 0
    assert rdm.device == f"/vmfs/devices/disks/{naa}"


def nothing_left(
    lab: LabState,
    si: Any,
    luns: Iterable[dict[str, Any]],
    vm_names: Iterable[str],
    host_names: Iterable[str],
    retained: bool = False,
) -> None:
    """For each LUN (`status.lun` of a deleted disk): no map, no LU, no RDM, and no host that
    still lists it; the LUN itself (state record and pool file) only if `retained`."""
    names = {lun["name"] for lun in luns}
    naas = {lun["naa"] for lun in luns}
    state = observe.backend_state(lab)
    kept = names & set(state["luns"])
    assert kept == (names if retained else set()), f"LUNs in the backend: {kept}"
    files = {f"{name}.img" for name in names} & observe.pool_files(lab)
    assert files == ({f"{name}.img" for name in names} if retained else set())
    assert [m for m in state["maps"] if m["lun"] in names] == []
    assert naas & observe.served(lab.tgt) == set()
    rdms = [r for vm in vm_names for r in observe.rdms(si, vm) if r.device.rsplit("/", 1)[1] in naas]
    assert rdms == []
    seen_by = {host: naas & observe.host_luns(si, host) for host in host_names}
    listed = {host: sorted(seen) for host, seen in seen_by.items() if seen}
    assert listed == {}, f"hosts still list unmapped LUNs: {listed}"
