"""Finding the disk of a publish context: one a hypervisor attached to this guest (the one
targeted rescan of the address the context names), or one this node reaches by logging in with
its own initiator (the session to the context's target, the scan of its LUN id); then the NAA
check of what appeared there.

NodeStageVolume and the node channel's snapshot verification both start here, so a device
whose NAA does not match is refused the same way everywhere: nothing is written to it, nothing
mounts it.
"""

from __future__ import annotations

import logging
from dataclasses import dataclass
from pathlib import Path

from lunbridge.errors import Conflict, InvalidArgument, LunbridgeError
from lunbridge.models import AttachMode, PublishContext
from lunbridge.storage.base import Chap
from lunbridge_csi.guest import iscsi, scsi

log = logging.getLogger(__name__)

# how long a disk whose VPD page lacks the published NAA is asked again before it is refused
RECHECK_SECONDS = 3.0


@dataclass(frozen=True)
class Placement:
    """Where a hypervisor attached the disk in this guest, and the NAA it must carry."""

    naa: str
    pci_slot: int
    address: scsi.Address


def placement(where: PublishContext) -> Placement:
    """Where a `hypervisor` publish context says the disk is (InvalidArgument for another mode)."""
    if where.mode is not AttachMode.HYPERVISOR or where.pci_slot is None or where.guest_address is None:
        raise InvalidArgument(
            f"publish_context mode {where.mode.value}: this node plugin finds disks a hypervisor attached"
        )
    return Placement(where.naa, where.pci_slot, where.guest_address)


async def find_disk(root: Path, where: Placement, within: float, what: str) -> tuple[str, str]:
    """(SCSI host, sdX) of the disk at `where`, after a targeted rescan, carrying `where.naa`.

    Waits up to `within` seconds for the controller and the disk (Unavailable after that);
    Conflict when the disk there carries another NAA (`what` names the volume in the error)."""
    host = await scsi.wait_for_host(root, where.pci_slot, within)
    return host, await disk_at(root, host, where.address, where.naa, within, what)


async def disk_at(root: Path, host: str, address: scsi.Address, naa: str, within: float, what: str) -> str:
    """sdX at `address` of SCSI host `host` after a targeted rescan, once it carries `naa`;
    Conflict when it carries another (nothing was written to it)."""
    device = await scsi.wait_for_device(root, host, address, within)
    carried = scsi.device_naas(root, device)
    if naa not in carried:
        log.info("%s shows %s, not %s yet: asking the disk again", device, carried or "no NAA", naa)
        carried = await scsi.recheck_naas(root, device, naa, RECHECK_SECONDS)
    if naa not in carried:
        raise Conflict(
            f"the disk at {scsi.hctl(host, address)} ({device}) carries "
            f"{', '.join(carried) or 'no NAA'}, not {naa} of {what}; nothing was written to it"
        )
    return device


async def find_logged_in_disk(
    root: Path, adm: iscsi.Iscsiadm, context: PublishContext, chap: Chap | None, within: float, what: str
) -> tuple[iscsi.Session, str, str]:
    """An `initiator` publish context's disk: the session to its target (adopted or logged in),
    the targeted scan of its LUN id on that session, the NAA check; (session, H:C:T:L, sdX).
    A session made here is logged out again when the disk is not found or refused. The caller
    holds the node's sessions lock."""
    if context.target_iqn is None or context.lun_id is None or not context.portals:
        raise InvalidArgument("publish_context of an initiator attachment lacks targetIqn, portals or lunId")
    session, new = await iscsi.log_in(adm, root, context.target_iqn, context.portals, chap)
    address = scsi.Address(0, session.target_id, context.lun_id)
    try:
        device = await disk_at(root, session.host, address, context.naa, within, what)
    except LunbridgeError:
        if new:  # nothing else can use a session this call made: it goes with the failure
            await adm.logout(session.target, session.portal)
        raise
    return session, scsi.hctl(session.host, address), device
