"""The periodic re-check of every Ready VirtualDisk in one pass.

A Ready disk is checked again every --resync-seconds: a tgtd restarted, a map removed by hand,
an RDM removed in vCenter, a VM that moved, a host of the scope that no longer lists the LUN.
Checked one by one, with a full reconcile each, that cost every disk its own Kubernetes reads,
storage reads and hypervisor reads: at 1,000 disks about 17 full reconciles a second, whatever
had changed. Instead one pass reads each layer once (`orphans.look`: every backend's LUNs and
maps, every VM's LUN disks; the hosts' SCSI topologies, one read per host) and compares each
disk's status with what it read. Only a disk that drifted gets the full
reconcile, which repairs what it can and says so in its conditions and Events. The pass costs
one listing per backend, VM set and host, however many disks there are.
"""

from __future__ import annotations

from collections.abc import Sequence

from lunbridge.errors import InvalidArgument, LunbridgeError, NotFound
from lunbridge.models import AttachMode
from lunbridge.models import ConditionType as Cond
from lunbridge.storage.base import Lun
from lunbridge_operator import naming
from lunbridge_operator.reconcile import health, hosts
from lunbridge_operator.reconcile.disk import Disk
from lunbridge_operator.reconcile.health import Drift
from lunbridge_operator.reconcile.orphans import Seen
from lunbridge_operator.reconcile.services import Services

# a node that logs in itself: its igroup's initiators and CHAP (which a Secret rotation changes)
# are checked by the full reconcile, which is cheap on that path (no hypervisor)
ROUTINE = Drift(health.ROUTINE, "a node that logs in itself is checked in full")


# Whether a host sees a LUN comes from its SCSI topology (`VSphere.sees_lun`): the one listing
# here that grows with the disks, about 0.08 ms of CPU per LUN to decode on the lab (the full LUN
# list it replaced took 0.5-1 ms); one read per host and pass, at most this many periods old, so
# a host that stopped listing a LUN is found by the next pass
HOST_LISTING_PERIODS = 1


def settled(disk: Disk) -> bool:
    """A disk the pass may judge: Ready for its generation, with a LUN recorded."""
    return disk.settled and disk.made_anything and disk.spec_error is None


async def drift(svc: Services, disk: Disk, seen: Seen, luns: dict[tuple[str, str], Lun]) -> Drift | None:
    """Why `disk` (`settled`) needs a full reconcile (the broken link, or a VM that moved), or
    None when storage and the hypervisor hold what its status records (`luns`: `seen.luns` by
    backend and name)."""
    status, lun = disk.status, disk.lun
    try:
        backend, _ = disk.backend(svc)
    except InvalidArgument as exc:
        return Drift(health.BACKEND_MISSING, str(exc))
    found = luns.get((backend, lun.name or ""))
    if found is None:
        return Drift(health.LUN_MISSING, f"LUN {lun.name} ({lun.naa}) is not on storage backend {backend}")
    if found.naa != lun.naa or found.size_bytes < disk.spec.size_bytes:
        return Drift(health.LUN_CHANGED, f"LUN {lun.name} is {found.naa}, {found.size_bytes} bytes, "
                                         f"not {lun.naa}, {disk.spec.size_bytes} bytes")  # fmt: skip
    maps = [(m.igroup, m.lun_id) for m in seen.maps.get((backend, found.name), [])]
    rdms = {d.vm.id for d in seen.disks.get(found.naa, [])}
    attachment = status.attachment
    if attachment is None:
        if maps or rdms:
            return Drift(health.STRAY_MAP, f"LUN {lun.name} is mapped or attached while the disk is not")
        return None
    if maps != [(status.initiator_group, lun.id)]:
        wanted = f"igroup {status.initiator_group} as LUN {lun.id}"
        if not maps:
            return Drift(health.MAP_MISSING, f"LUN {lun.name} is mapped to no igroup, not to {wanted}")
        return Drift(health.MAP_WRONG, f"LUN {lun.name} is mapped to {maps}, not to {wanted}")
    if attachment.mode is AttachMode.INITIATOR:
        return ROUTINE
    if rdms != {attachment.vm_id}:
        if not rdms:
            return Drift(health.RDM_MISSING, f"VM {attachment.vm} has no RDM of {found.naa}")
        return Drift(
            health.RDM_WRONG, f"the RDM of {found.naa} is on {sorted(rdms)}, not on VM {attachment.vm}"
        )
    return await _hosts_drift(svc, disk, found.naa)


async def _hosts_drift(svc: Services, disk: Disk, naa: str) -> Drift | None:
    """The VM moved, or a host of its scope no longer lists the LUN (by listings at most
    HOST_LISTING_PERIODS re-check periods old)."""
    attachment = disk.status.attachment
    if attachment is None or not attachment.provider_id:
        return Drift(health.VM_MISSING, "no VM is recorded")
    hypervisor = svc.hypervisor
    try:
        vm = await hypervisor.find_vm(attachment.provider_id)
    except NotFound as exc:
        return Drift(health.VM_MISSING, str(exc))
    if vm.id != attachment.vm_id:
        return Drift(health.VM_REPLACED, f"the node's VM is {vm.name} ({vm.id}) now, not {attachment.vm}")
    if vm.host.name != attachment.host:
        return Drift(health.VM_MOVED, f"VM {vm.name} runs on host {vm.host.name} now")
    igroup = naming.igroup_name(vm.host, svc.scope_for(vm.host, disk.spec.scope))
    if igroup != disk.status.initiator_group:
        return Drift(health.HOST_MOVED, f"host {vm.host.name}, which runs VM {vm.name}, is served by igroup "
                                        f"{igroup} now, not {disk.status.initiator_group}")  # fmt: skip
    within = svc.resync_seconds * HOST_LISTING_PERIODS
    for host in await hosts.of_scope(svc, vm, disk.spec.scope):
        if await hypervisor.sees_lun(host, naa, within=within):
            continue
        if host.id == vm.host.id:
            said = f"host {host.name}, which runs VM {vm.name}, does not list {naa}"
            return Drift(health.HOST_LOST_LUN, said)
        # another host of the cluster: one that joined it, or lost the LUN; the VM's I/O goes on,
        # and ClusterReady says whether it can move there
        return Drift(health.HOST_TO_REVEAL, f"host {host.name} of the disk's scope does not list {naa}")
    return None


def _back(disk: Disk) -> Drift | None:
    """Every link is in place again, but status still says one broke or the last reconcile
    failed: the reconcile that says so (someone fixed it by hand)."""
    status = disk.status
    said = status.condition(Cond.HEALTHY)
    if said is not None and not said.true:
        return Drift(health.BACK_IN_PLACE, f"no longer found: {said.message}")
    if not status.is_true(Cond.READY):
        return Drift(health.BACK_IN_PLACE, "every link is in place, and the disk is not Ready")
    return None


async def judge(svc: Services, disks: Sequence[Disk], seen: Seen) -> dict[str, Drift]:
    """The disks of `disks` (`settled`) that drifted: name -> why. A disk whose check itself fails is
    among them (the full reconcile reports its error)."""
    drifted: dict[str, Drift] = {}
    luns = {(backend, lun.name): lun for backend, lun in seen.luns}
    for disk in disks:
        try:
            why = await drift(svc, disk, seen, luns)
        except LunbridgeError as exc:
            why = Drift(health.CHECK_FAILED, str(exc))
        if why is None:
            why = _back(disk)
        if why is not None:
            drifted[disk.name] = why
    return drifted
