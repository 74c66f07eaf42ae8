"""One contract for every storage backend (tgt, ontap), checked against the real data plane:
what the operator relies on, whatever server is behind it. Each test runs once per backend
(`subject`); masking and content are checked by real iSCSI logins under chosen IQNs."""

from __future__ import annotations

import pytest

from lunbridge.errors import AlreadyExists, Conflict, InvalidArgument, NotFound
from lunbridge.san import Transport
from lunbridge.storage.base import Lun
from tests.integration.backends import seen
from tests.integration.backends.conftest import Subject

pytestmark = pytest.mark.peers
MIB = 1 << 20


async def _mapped(subject: Subject, base: str, initiator: str) -> tuple[Lun, str]:
    """A new 32 MiB LUN mapped to a new igroup of `initiator`: the LUN and the igroup's name."""
    lun = await subject.backend.create_lun(subject.lun(base), 32 * MIB)
    group = subject.igroup(base)
    await subject.backend.create_igroup(group, Transport.ISCSI, [initiator])
    await subject.backend.map_lun(lun.name, group)
    return lun, group


async def test_create_is_idempotent_and_a_conflicting_create_is_refused(subject: Subject) -> None:
    b = subject.backend
    name = subject.lun("idem")
    first = await b.create_lun(name, 64 * MIB)
    again = await b.create_lun(name, 64 * MIB)
    assert (again.naa, again.serial) == (first.naa, first.serial)
    assert first.size_bytes >= 64 * MIB
    assert name in [lun.name for lun in await b.list_luns()]
    with pytest.raises(AlreadyExists, match=name):
        await b.create_lun(name, 256 * MIB)
    other = await b.create_lun(subject.lun("other"), 64 * MIB)
    assert other.naa != first.naa
    assert other.serial != first.serial


async def test_a_lun_grows_and_never_shrinks(subject: Subject) -> None:
    b = subject.backend
    name = subject.lun("grow")
    made = await b.create_lun(name, 32 * MIB)
    grown = await b.resize_lun(name, 96 * MIB)
    assert grown.size_bytes >= 96 * MIB
    assert grown.naa == made.naa
    assert (await b.resize_lun(name, 96 * MIB)).size_bytes == grown.size_bytes
    with pytest.raises(InvalidArgument, match="shrink"):
        await b.resize_lun(name, 16 * MIB)
    assert (await b.get_lun(name)).size_bytes == grown.size_bytes


async def test_a_mapped_lun_is_seen_only_by_its_igroups_initiators(subject: Subject) -> None:
    b = subject.backend
    a, other = subject.initiator("a"), subject.initiator("b")
    lun = await b.create_lun(subject.lun("masked"), 64 * MIB)
    group = subject.igroup("hosts")
    await b.create_igroup(group, Transport.ISCSI, [a])
    mapping = await b.map_lun(lun.name, group)
    assert await b.map_lun(lun.name, group) == mapping
    assert mapping in await b.list_mappings(lun.name)

    where = seen.reach(subject.portals, a, lun.naa)
    assert seen.capacity(where, a) == lun.size_bytes
    assert lun.naa not in seen.luns_by_naa(subject.portals, other)

    grown = await b.resize_lun(lun.name, 128 * MIB)
    assert seen.capacity(seen.reach(subject.portals, a, lun.naa), a) == grown.size_bytes

    await b.unmap_lun(lun.name, group)
    await b.unmap_lun(lun.name, group)  # a missing map is success
    assert lun.naa not in seen.luns_by_naa(subject.portals, a)
    assert await b.list_mappings(lun.name) == []


async def test_deleting_a_mapped_lun_or_igroup_is_refused(subject: Subject) -> None:
    b = subject.backend
    name, group = subject.lun("busy"), subject.igroup("busy")
    await b.create_lun(name, 16 * MIB)
    await b.create_igroup(group, Transport.ISCSI, [subject.initiator("a")])
    await b.map_lun(name, group)
    with pytest.raises(Conflict):
        await b.delete_lun(name)
    with pytest.raises(Conflict):
        await b.delete_igroup(group)
    assert (await b.get_lun(name)).name == name

    await b.unmap_lun(name, group)
    await b.delete_lun(name)
    await b.delete_lun(name)  # a missing LUN is success
    with pytest.raises(NotFound):
        await b.get_lun(name)
    await b.delete_igroup(group)
    await b.delete_igroup(group)
    with pytest.raises(NotFound):
        await b.get_igroup(group)


async def test_igroups_are_idempotent_and_their_initiators_change(subject: Subject) -> None:
    b = subject.backend
    a, c = subject.initiator("a"), subject.initiator("c")
    group = subject.igroup("members")
    made = await b.create_igroup(group, Transport.ISCSI, [a])
    assert await b.create_igroup(group, Transport.ISCSI, [a]) == made
    with pytest.raises(AlreadyExists):
        await b.create_igroup(group, Transport.ISCSI, [c])
    lun = await b.create_lun(subject.lun("members"), 16 * MIB)
    await b.map_lun(lun.name, group)

    assert (await b.add_initiators(group, [c, a])).initiators == tuple(sorted([a, c]))
    seen.reach(subject.portals, c, lun.naa)
    assert (await b.remove_initiators(group, [a])).initiators == (c,)
    assert lun.naa not in seen.luns_by_naa(subject.portals, a)
    seen.reach(subject.portals, c, lun.naa)


async def test_a_snapshot_keeps_its_instant_and_a_clone_is_a_new_disk_with_it(subject: Subject) -> None:
    b = subject.backend
    a = subject.initiator("a")
    lun, group = await _mapped(subject, "origin", a)
    where = seen.reach(subject.portals, a, lun.naa)
    seen.write(where, a, 0x5A)

    snap_name = subject.snapshot("snap")
    snap = await b.create_snapshot(lun.name, snap_name)
    assert (snap.lun, snap.name) == (lun.name, snap_name)
    assert await b.create_snapshot(lun.name, snap_name) == snap
    assert snap_name in [s.name for s in await b.list_snapshots(lun.name)]
    seen.write(where, a, 0xA5)

    clone = await b.clone_lun(snap_name, subject.lun("clone"))
    assert clone.naa != lun.naa
    assert clone.serial != lun.serial
    assert clone.source_snapshot == snap_name
    assert (await b.clone_lun(snap_name, clone.name)).naa == clone.naa
    await b.map_lun(clone.name, group)
    assert seen.holds(seen.reach(subject.portals, a, clone.naa), a, 0x5A)
    assert seen.holds(seen.reach(subject.portals, a, lun.naa), a, 0xA5)


async def test_a_restore_puts_the_snapshot_back_into_the_same_lun(subject: Subject) -> None:
    b = subject.backend
    a = subject.initiator("a")
    lun, group = await _mapped(subject, "restored", a)
    seen.write(seen.reach(subject.portals, a, lun.naa), a, 0x11)
    snap_name = subject.snapshot("before")
    await b.create_snapshot(lun.name, snap_name)
    seen.write(seen.reach(subject.portals, a, lun.naa), a, 0x22)
    with pytest.raises(Conflict, match="mapped"):
        await b.revert_lun(lun.name, snap_name)

    await b.unmap_lun(lun.name, group)
    grown = await b.resize_lun(lun.name, 64 * MIB)
    with pytest.raises(NotFound):
        await b.revert_lun(lun.name, "no-such-snapshot")
    restored = await b.revert_lun(lun.name, snap_name)
    assert (restored.naa, restored.serial) == (lun.naa, lun.serial)
    assert restored.size_bytes == grown.size_bytes  # a LUN that grew since keeps its size
    await b.map_lun(lun.name, group)
    where = seen.reach(subject.portals, a, lun.naa)
    assert seen.holds(where, a, 0x11)
    assert seen.capacity(where, a) == grown.size_bytes
