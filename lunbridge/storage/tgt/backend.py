"""The Linux SCSI target (tgtd, driven with `tgtadm`) as a lunbridge storage server.

Model: each iSCSI initiator group is one tgt target named `<iqn_prefix><igroup>` whose ACL is
the igroup's initiators; a LUN mapped to the igroup is an LU of that target, its tgt LUN
number being the map's LUN id (1..255; LU 0 is tgt's controller). A LUN mapped to two
igroups is an LU on both targets with the same backing file, serial and NAA id. LUNs are
sparse files in pool folders; snapshots and clones are file copies (reflink where the file
system has it, sparse copy otherwise).

An iSCSI igroup may require CHAP of its initiators (`set_chap`, for nodes that log in
themselves): tgtd accounts bound to its target, incoming (one-way) and outgoing (mutual); two
igroups may share one account. See `chap` for the model, the limits and the errors.

The JSON state file (`state`, mode 0600: it holds the CHAP secrets) is the truth, tgtd a copy
of it: a call first compares tgtd with the state and re-applies what is missing (after a tgtd
restart: every target, LU, id, ACL and CHAP account) when tgtd may differ (the first call, a
reloaded state, a restarted tgtd, a failed call, and at least every `sync_seconds`; see
`core`), then changes
tgtd, then saves the state; reads in between are answered from the state. A failed change is
not saved, and the next call's comparison takes tgtd back to the saved state. Calls are
serialized by an asyncio lock and an advisory lock on the state file; the IQN prefix must
belong to one state file, because targets under it that the state does not know are removed.

What tgt cannot do, and what this backend does instead:
- no in-place resize: tgt reads the size of the backing file only when an LU is created, and
  `--op update` does not re-read it. A grow truncates the file larger, then deletes and
  re-creates the LU on every target it is mapped to (same file, ids, LUN number); initiators
  get a unit attention and see the new size on their next READ CAPACITY;
- no FC targets: FCP igroups are kept (so the operator can record them), but mapping a LUN
  to one raises InvalidArgument;
- no ids at LU creation: `--op new` takes no `--params`, so a new LU on a target that
  initiators can already reach carries tgt's default ids for the few milliseconds until the
  update; a new target gets its LUs before its ACL;
- LUN ids above 255: tgt answers them with flat-space addressing (libiscsi lists LUN 256 as
  16640), so ids are kept to 1..255;
- no CHAP password in `show` and no password update: a changed secret re-creates the account,
  and a target's incoming accounts are changed in an order that avoids a tgtd crash (`sync`).
"""

from __future__ import annotations

from lunbridge.storage.tgt.config import TgtConfig
from lunbridge.storage.tgt.groups import GroupOperations
from lunbridge.storage.tgt.luns import LunOperations

__all__ = ["TgtBackend", "TgtConfig"]


class TgtBackend(LunOperations, GroupOperations):
    """`StorageBackend` on one tgtd. Raises only `lunbridge.errors`.

    The state, locking and tgtd synchronisation are in `core`, the LUN and snapshot
    operations in `luns`, the igroup, CHAP and map operations in `groups` (the CHAP rules
    in `chap`)."""
