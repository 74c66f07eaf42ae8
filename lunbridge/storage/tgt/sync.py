"""Make tgtd hold exactly the targets the state file describes.

tgtd forgets everything when it restarts, and a crash between a tgtadm command and the state
write can leave tgtd half-changed. So every backend call starts with one `tgtadm --op show`
and compares it with the desired targets; anything missing or different is (re)applied and
anything extra under the backend's IQN prefix is removed. On an unchanged tgtd this costs one
tgtadm run and no change.

Compared per target: the ACL (initiator names) and, per LU, the backing file, scsi_id,
scsi_sn and thin provisioning. Sizes are not compared: tgt reads the size from the backing
file when an LU is created, so a resize re-creates the LU explicitly (see `TgtBackend`).
A new target gets its LUs before its ACL, so no initiator sees it half made.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass

from lunbridge.storage.tgt.admin import ShownLu, ShownTarget, Tgtadm


@dataclass(frozen=True)
class DesiredLu:
    path: str
    scsi_id: str
    scsi_sn: str

    def params(self) -> dict[str, str]:
        return {"scsi_id": self.scsi_id, "scsi_sn": self.scsi_sn, "thin_provisioning": "1"}

    def matches(self, shown: ShownLu) -> bool:
        return (
            shown.backing_path == self.path
            and shown.scsi_id == self.scsi_id
            and shown.scsi_sn == self.scsi_sn
            and shown.thin
        )


@dataclass(frozen=True)
class DesiredTarget:
    name: str
    acl: frozenset[str]
    luns: Mapping[int, DesiredLu]


async def reconcile(adm: Tgtadm, desired: Mapping[str, DesiredTarget], prefix: str) -> int:
    """Apply the difference between tgtd and `desired`; returns the number of commands run."""
    shown = await adm.show()
    changes = 0
    for name, target in shown.items():
        if name.startswith(prefix) and name not in desired:
            await adm.delete_target(target.tid)
            changes += 1
    used = {target.tid for target in shown.values()}
    for name, want in sorted(desired.items()):
        have = shown.get(name)
        if have is None:
            changes += await _create(adm, want, used)
        else:
            changes += await _update(adm, want, have)
    return changes


async def _create(adm: Tgtadm, want: DesiredTarget, used: set[int]) -> int:
    tid = max(used, default=0) + 1
    while not await adm.new_target(tid, want.name):  # taken meanwhile by another tool
        used.add(tid)
        tid += 1
    used.add(tid)
    for lun, lu in sorted(want.luns.items()):
        await adm.new_lu(tid, lun, lu.path, lu.params())
    for initiator in sorted(want.acl):
        await adm.bind(tid, initiator)
    return 1 + 2 * len(want.luns) + len(want.acl)


async def _update(adm: Tgtadm, want: DesiredTarget, have: ShownTarget) -> int:
    changes = 0
    for lun in sorted(have.luns):
        if lun != 0 and lun not in want.luns:
            await adm.delete_lu(have.tid, lun)
            changes += 1
    for lun, lu in sorted(want.luns.items()):
        shown = have.luns.get(lun)
        if shown is not None and lu.matches(shown):
            continue
        if shown is not None:
            if shown.backing_path == lu.path:  # only the ids differ: set them in place
                await adm.update_lu(have.tid, lun, lu.params())
                changes += 1
                continue
            await adm.delete_lu(have.tid, lun)
        await adm.new_lu(have.tid, lun, lu.path, lu.params())
        changes += 2
    for initiator in sorted(set(have.acl) - want.acl):
        await adm.unbind(have.tid, initiator)
        changes += 1
    for initiator in sorted(want.acl - set(have.acl)):
        await adm.bind(have.tid, initiator)
        changes += 1
    return changes
