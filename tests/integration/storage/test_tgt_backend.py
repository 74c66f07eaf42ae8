"""The tgt backend against the lab's real tgtd, checked from the initiator side with libiscsi:
who sees which LUN, with which NAA id, serial and size."""

from __future__ import annotations

import pytest

from lunbridge.errors import Conflict
from lunbridge.san import Transport
from lunbridge.storage.base import Mapping
from lunbridge.storage.tgt import TgtBackend
from tests.integration.storage import iscsi
from tests.lab.tgt import Tgt

A = "iqn.1998-01.com.vmware:storage-host-a"
B = "iqn.1998-01.com.vmware:storage-host-b"
C = "iqn.1998-01.com.vmware:storage-host-c"


async def test_a_mapped_lun_is_seen_only_by_the_igroups_initiators(backend: TgtBackend, tgt: Tgt) -> None:
    lun = await backend.create_lun("vol-a", 64 << 20)
    await backend.create_igroup("hosts-a", Transport.ISCSI, [A])
    mapping = await backend.map_lun("vol-a", "hosts-a")
    target = backend.target_name("hosts-a")

    assert iscsi.visible_luns(tgt.portal, A).get(target) == [mapping.lun_id]
    seen = iscsi.identity(tgt.portal, A, target, mapping.lun_id)
    assert seen.naa == lun.naa
    assert f"naa.{seen.vendor_id}" == lun.naa
    assert seen.serial == lun.serial
    assert iscsi.capacity(tgt.portal, A, target, mapping.lun_id) == 64 << 20

    assert target not in iscsi.visible_luns(tgt.portal, B)
    assert iscsi.login_refused(tgt.portal, B, target, mapping.lun_id)

    await backend.unmap_lun("vol-a", "hosts-a")
    assert iscsi.visible_luns(tgt.portal, A).get(target) == []
    assert target not in iscsi.visible_luns(tgt.portal, B)


async def test_a_lun_in_two_igroups_has_one_identity(backend: TgtBackend, tgt: Tgt) -> None:
    lun = await backend.create_lun("shared", 16 << 20)
    await backend.create_igroup("left", Transport.ISCSI, [A])
    await backend.create_igroup("right", Transport.ISCSI, [B])
    left = await backend.map_lun("shared", "left")
    right = await backend.map_lun("shared", "right", 9)
    from_a = iscsi.identity(tgt.portal, A, backend.target_name("left"), left.lun_id)
    from_b = iscsi.identity(tgt.portal, B, backend.target_name("right"), right.lun_id)
    assert from_a == from_b
    assert from_a.naa == lun.naa
    assert iscsi.visible_luns(tgt.portal, B)[backend.target_name("right")] == [9]


async def test_initiators_come_and_go_with_the_igroup(backend: TgtBackend, tgt: Tgt) -> None:
    await backend.create_lun("vol", 16 << 20)
    await backend.create_igroup("g", Transport.ISCSI, [A])
    await backend.map_lun("vol", "g")
    target = backend.target_name("g")
    await backend.add_initiators("g", [C])
    assert iscsi.visible_luns(tgt.portal, C).get(target) == [1]
    await backend.remove_initiators("g", [A])
    assert target not in iscsi.visible_luns(tgt.portal, A)
    assert iscsi.visible_luns(tgt.portal, C).get(target) == [1]


async def test_mapped_objects_refuse_deletion_and_deletes_are_idempotent(
    backend: TgtBackend, tgt: Tgt
) -> None:
    lun = await backend.create_lun("vol", 16 << 20)
    assert await backend.create_lun("vol", 16 << 20) == lun
    group = await backend.create_igroup("g", Transport.ISCSI, [A])
    assert await backend.create_igroup("g", Transport.ISCSI, [A]) == group
    await backend.map_lun("vol", "g")
    with pytest.raises(Conflict, match="unmap it first"):
        await backend.delete_lun("vol")
    with pytest.raises(Conflict, match="unmap them first"):
        await backend.delete_igroup("g")
    assert iscsi.visible_luns(tgt.portal, A).get(backend.target_name("g")) == [1]  # untouched

    await backend.unmap_lun("vol", "g")
    await backend.unmap_lun("vol", "g")
    await backend.delete_lun("vol")
    await backend.delete_lun("vol")
    await backend.delete_igroup("g")
    await backend.delete_igroup("g")
    assert await backend.list_luns() == []
    # tgtd may now hold no target at all (it then refuses discoveries): ask tgtd itself
    shown = tgt.adm("--op", "show", "--mode", "target").stdout
    assert backend.target_name("g") not in shown


async def test_lowest_free_lun_id(backend: TgtBackend, tgt: Tgt) -> None:
    await backend.create_igroup("g", Transport.ISCSI, [A])
    for name in ["l1", "l2", "l3", "l4"]:
        await backend.create_lun(name, 8 << 20)
    assert [(await backend.map_lun(n, "g")).lun_id for n in ["l1", "l2", "l3"]] == [1, 2, 3]
    await backend.unmap_lun("l2", "g")
    assert await backend.map_lun("l4", "g") == Mapping("l4", "g", 2)
    assert sorted(iscsi.visible_luns(tgt.portal, A)[backend.target_name("g")]) == [1, 2, 3]
    l4 = await backend.get_lun("l4")
    assert iscsi.identity(tgt.portal, A, backend.target_name("g"), 2).naa == l4.naa


async def test_grow_is_visible_to_initiators(backend: TgtBackend, tgt: Tgt) -> None:
    lun = await backend.create_lun("vol", 32 << 20)
    await backend.create_igroup("g1", Transport.ISCSI, [A])
    await backend.create_igroup("g2", Transport.ISCSI, [B])
    await backend.map_lun("vol", "g1")
    await backend.map_lun("vol", "g2", 4)
    assert iscsi.capacity(tgt.portal, A, backend.target_name("g1"), 1) == 32 << 20
    grown = await backend.resize_lun("vol", 96 << 20)
    assert grown.size_bytes == 96 << 20
    assert iscsi.capacity(tgt.portal, A, backend.target_name("g1"), 1) == 96 << 20
    assert iscsi.capacity(tgt.portal, B, backend.target_name("g2"), 4) == 96 << 20
    assert iscsi.identity(tgt.portal, B, backend.target_name("g2"), 4).naa == lun.naa
