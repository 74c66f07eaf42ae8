"""Finding the disk a hypervisor attached to this guest: the one targeted rescan of the address
the publish context names, then the NAA check of what appeared there.

NodeStageVolume and the node channel's snapshot verification both start here, so a device
whose NAA does not match is refused the same way everywhere: nothing is written to it, nothing
mounts it.
"""

from __future__ import annotations

import logging
from collections.abc import Mapping
from dataclasses import dataclass
from pathlib import Path

from lunbridge.errors import Conflict, InvalidArgument
from lunbridge.models import AttachMode, PublishContext
from lunbridge_csi.guest import scsi

log = logging.getLogger(__name__)

# how long a disk whose VPD page lacks the published NAA is asked again before it is refused
RECHECK_SECONDS = 3.0


@dataclass(frozen=True)
class Placement:
    """Where a hypervisor attached the disk in this guest, and the NAA it must carry."""

    naa: str
    pci_slot: int
    address: scsi.Address


def placement(context: Mapping[str, str]) -> Placement:
    """From the publish context (InvalidArgument naming a missing or bad key)."""
    where = PublishContext.from_dict(context)
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
    device = await scsi.wait_for_device(root, host, where.address, within)
    carried = scsi.device_naas(root, device)
    if where.naa not in carried:
        log.info("%s shows %s, not %s yet: asking the disk again", device, carried or "no NAA", where.naa)
        carried = await scsi.recheck_naas(root, device, where.naa, RECHECK_SECONDS)
    if where.naa not in carried:
        raise Conflict(
            f"the disk at {scsi.hctl(host, where.address)} ({device}) carries "
            f"{', '.join(carried) or 'no NAA'}, not {where.naa} of {what}; nothing was written to it"
        )
    return host, device
