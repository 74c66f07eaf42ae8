"""A VirtualDisk's `Healthy` condition: which link of its chain broke, and its repair.

A disk's data reaches its pod over a chain of links: the LUN on its storage backend, its map to
an igroup, the hosts of its scope that see it, the RDM on the VM (or the node's own login). The
periodic re-check (`reconcile.recheck`) compares each link with what status records; a link
that broke behind lunbridge's back (a map removed on the storage server, an RDM removed in
vCenter, a LUN deleted) makes `Healthy` False, with the link as its reason, and a Warning Event
of that reason. The full reconcile that follows repairs what it can; when it ends Ready,
`Healthy` turns True again with reason `Repaired` and a `Repaired` Event. A link it cannot
repair keeps `Healthy` False until someone fixes it: a LUN that is gone (an empty one in its
place would hide the loss: `refuse_lost_lun`), or another LUN under its name (its data is not
the disk's: `refuse_other_lun`). The CSI controller reports `Healthy` as the volume condition
(ControllerGetVolume, ListVolumes), and the external health monitor turns it into Events on
the PVC.
"""

from __future__ import annotations

from dataclasses import dataclass

from lunbridge.errors import Conflict, NotFound
from lunbridge.models import AttachMode
from lunbridge.models import ConditionType as Cond
from lunbridge.storage.base import Lun
from lunbridge_operator.reconcile.disk import Disk
from lunbridge_operator.reconcile.services import Events

# the reasons of a broken link, in the order of the chain
BACKEND_MISSING = "BackendMissing"  # the backend status names is no longer configured
LUN_MISSING = "LunMissing"
LUN_CHANGED = "LunChanged"  # another NAA, or smaller than the spec
MAP_MISSING = "MapMissing"
MAP_WRONG = "MapWrong"  # mapped to another igroup or LUN id, or to more than one
STRAY_MAP = "StrayMap"  # mapped or attached while the disk is not attached
HOST_LOST_LUN = "HostLostLun"  # the host that runs the disk's VM no longer lists the LUN
VM_MISSING = "VmMissing"
RDM_MISSING = "RdmMissing"
RDM_WRONG = "RdmWrong"  # the RDM is on another VM, or on more than one

# reasons to reconcile that are not a broken link
VM_MOVED = "VmMoved"  # vMotion, DRS or HA: status follows, nothing is detached
# another host of a cluster scope does not list the LUN (it joined the cluster, or lost it): it
# is revealed to it, and ClusterReady (not Healthy) says whether the VM can move there
HOST_TO_REVEAL = "HostToReveal"
# the VM's host moved into another cluster (or out of one): the LUN is masked to the igroup of
# the new scope under the same LUN id, then unmapped from the old one
HOST_MOVED = "HostMoved"
VM_REPLACED = "VmReplaced"  # the node's provider id names another VM: the disk follows it
ROUTINE = "Routine"  # a node that logs in itself is checked in full every pass
CHECK_FAILED = "CheckFailed"  # a layer could not be read; the reconcile reports its error
SPEC_AHEAD = "SpecAhead"  # status describes an older generation than the spec
BACK_IN_PLACE = "BackInPlace"  # status says a link broke, and every link is in place again
NOT_BROKEN = frozenset(
    {VM_MOVED, HOST_MOVED, VM_REPLACED, HOST_TO_REVEAL, ROUTINE, CHECK_FAILED, SPEC_AHEAD, BACK_IN_PLACE}
)

VERIFIED = "Verified"
REPAIRED = "Repaired"


@dataclass(frozen=True)
class Drift:
    """Why a Ready disk needs a full reconcile: `reason` (one of this module's reasons; for a
    broken link, the `Healthy` condition's reason), `message` (what was found, in words)."""

    reason: str
    message: str

    @property
    def broken(self) -> bool:
        """A link of the chain broke (not a moved VM, a routine check or an unreadable layer)."""
        return self.reason not in NOT_BROKEN

    def __str__(self) -> str:
        return self.message


def found_broken(disk: Disk, drift: Drift, events: Events) -> None:
    """Record a broken link in the working copy (the reconcile's next write carries it): Healthy
    False with the link as reason; a Warning Event when the condition changed."""
    before = disk.status.condition(Cond.HEALTHY)
    disk.condition(False, drift.reason, drift.message, Cond.HEALTHY)
    if before is None or before.true or before.reason != drift.reason:
        events(drift.reason, drift.message, warning=True)


def verified(disk: Disk, events: Events) -> None:
    """The reconcile ends Ready, so every link is in place (it made or checked each): Healthy
    True; `Repaired`, with an Event, when a re-check had found a link broken."""
    before = disk.status.condition(Cond.HEALTHY)
    if before is not None and not before.true:
        message = f"repaired: {before.message}"
        disk.condition(True, REPAIRED, message, Cond.HEALTHY)
        events(REPAIRED, message)
        return
    if before is not None and before.reason == REPAIRED:
        return  # says what was repaired until the next change
    disk.condition(True, VERIFIED, _chain(disk), Cond.HEALTHY)


def refuse_lost_lun(disk: Disk, backend: str) -> None:
    """Before a LUN is made for `disk`: NotFound when status records its NAA, so it existed and
    is lost. An empty LUN in its place would hide the loss (and be formatted by the node)."""
    recorded = disk.status.lun
    if recorded is None or not recorded.naa:
        return  # never made, or made by a reconcile that crashed before saying so
    raise NotFound(
        f"LUN {recorded.name} ({recorded.naa}), which holds this disk's data, is gone from storage "
        f"backend {backend}; lunbridge does not put an empty LUN in its place. Bring it back on the "
        "backend (the disk is repaired then), or delete this VirtualDisk (or make a new one from a "
        "DiskSnapshot)"
    )


def refuse_other_lun(disk: Disk, backend: str, lun: Lun) -> None:
    """Before `lun`, found by the disk's LUN name, is used: Conflict when it carries another NAA
    than status records. Another LUN took the name; its data is not this disk's, and attaching
    it would hand the node another disk."""
    recorded = disk.status.lun
    if recorded is None or not recorded.naa or recorded.naa == lun.naa:
        return
    raise Conflict(
        f"LUN {lun.name} on storage backend {backend} is {lun.naa}, not {recorded.naa}, which holds "
        "this disk's data: another LUN took its name, and lunbridge does not attach it in its place. "
        "Bring the original back under that name, or delete this VirtualDisk"
    )


def _chain(disk: Disk) -> str:
    status = disk.status
    lun = status.lun
    said = f"LUN {lun.naa} is on storage backend {lun.backend}" if lun else "the LUN is in place"
    attachment = status.attachment
    if attachment is None:
        return f"{said}; not attached"
    said += f", mapped to igroup {status.initiator_group}"
    if attachment.mode is AttachMode.INITIATOR:
        return f"{said}, for node {attachment.node}'s own initiator"
    return f"{said}, attached to VM {attachment.vm}"
