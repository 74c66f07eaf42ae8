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
from lunbridge.storage.base import Lun
from lunbridge_operator.reconcile import hosts
from lunbridge_operator.reconcile.disk import Disk
from lunbridge_operator.reconcile.orphans import Seen
from lunbridge_operator.reconcile.services import Services

# a node that logs in itself: its igroup's initiators and CHAP (which a Secret rotation changes)
# are checked by the full reconcile, which is cheap on that path (no hypervisor)
ROUTINE = "a node that logs in itself is checked in full"


# Whether a host sees a LUN comes from its SCSI topology (`VSphere.sees_lun`): the one listing
# here that grows with the disks, about 0.08 ms of CPU per LUN to decode on the lab (the full LUN
# list it replaced took 0.5-1 ms); one read per host and pass, at most this many periods old, so
# a host that stopped listing a LUN is found by the next pass
HOST_LISTING_PERIODS = 1


def settled(disk: Disk) -> bool:
    """A disk the pass may judge: Ready for its generation, with a LUN recorded."""
    return disk.settled and disk.made_anything and disk.spec_error is None


async def drift(svc: Services, disk: Disk, seen: Seen, luns: dict[tuple[str, str], Lun]) -> str | None:
    """Why `disk` (`settled`) needs a full reconcile, in words, or None when storage and the
    hypervisor hold what its status records (`luns`: `seen.luns` by backend and name)."""
    status, lun = disk.status, disk.lun
    try:
        backend, _ = disk.backend(svc)
    except InvalidArgument as exc:
        return str(exc)
    found = luns.get((backend, lun.name or ""))
    if found is None:
        return f"LUN {lun.name} is not on backend {backend}"
    if found.naa != lun.naa or found.size_bytes < disk.spec.size_bytes:
        return f"LUN {lun.name} is {found.naa}, {found.size_bytes} bytes"
    maps = [(m.igroup, m.lun_id) for m in seen.maps.get((backend, found.name), [])]
    rdms = {d.vm.id for d in seen.disks.get(found.naa, [])}
    attachment = status.attachment
    if attachment is None:
        if maps or rdms:
            return f"LUN {lun.name} is mapped or attached while the disk is not"
        return None
    if maps != [(status.initiator_group, lun.id)]:
        wanted = f"{status.initiator_group} as LUN {lun.id}"
        return f"LUN {lun.name} is mapped to {maps or 'nothing'}, not to {wanted}"
    if attachment.mode is AttachMode.INITIATOR:
        return ROUTINE
    if rdms != {attachment.vm_id}:
        return f"the RDM of {found.naa} is on {sorted(rdms) or 'no VM'}, not on VM {attachment.vm}"
    return await _hosts_drift(svc, disk, found.naa)


async def _hosts_drift(svc: Services, disk: Disk, naa: str) -> str | None:
    """The VM moved, or a host of its scope no longer lists the LUN (by listings at most
    HOST_LISTING_PERIODS re-check periods old)."""
    attachment = disk.status.attachment
    if attachment is None or not attachment.provider_id:
        return "no VM is recorded"
    hypervisor = svc.hypervisor
    try:
        vm = await hypervisor.find_vm(attachment.provider_id)
    except NotFound as exc:
        return str(exc)
    if vm.id != attachment.vm_id or vm.host.name != attachment.host:
        return f"VM {vm.name} runs on host {vm.host.name} now"
    within = svc.resync_seconds * HOST_LISTING_PERIODS
    for host in await hosts.of_scope(svc, vm, disk.spec.scope):
        if not await hypervisor.sees_lun(host, naa, within=within):
            return f"host {host.name} does not list {naa}"
    return None


async def judge(svc: Services, disks: Sequence[Disk], seen: Seen) -> dict[str, str]:
    """The disks of `disks` (`settled`) that drifted: name -> why. A disk whose check itself fails is
    among them (the full reconcile reports its error)."""
    drifted: dict[str, str] = {}
    luns = {(backend, lun.name): lun for backend, lun in seen.luns}
    for disk in disks:
        try:
            why = await drift(svc, disk, seen, luns)
        except LunbridgeError as exc:
            why = str(exc)
        if why is not None:
            drifted[disk.name] = why
    return drifted
