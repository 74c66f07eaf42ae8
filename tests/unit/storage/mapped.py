"""A LUN that an igroup maps: where the tgt backend's snapshot-cut tests start, on the fake
tgtd (tests/unit/storage) and on the lab's (tests/integration/storage)."""

from __future__ import annotations

from lunbridge.san import Transport
from lunbridge.storage.tgt import TgtBackend


async def mapped_lun(backend: TgtBackend, name: str, size: int, igroup: str, initiator: str) -> None:
    """LUN `name` of `size` bytes, mapped to a new iSCSI igroup `igroup` of `initiator`."""
    await backend.create_lun(name, size)
    await backend.create_igroup(igroup, Transport.ISCSI, [initiator])
    await backend.map_lun(name, igroup)
