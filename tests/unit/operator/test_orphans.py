"""Issue 12, case 10: orphans found. Disks are made through the real reconcile on the fakes;
then an orphan LUN, map and RDM are made directly on the fake storage and hypervisor, beside
a user's own LUN (mapped and attached, but not of lunbridge's naming): only the three are
reported, `remove` removes exactly them and nothing owned, and the operator's reporter sets
the gauge and posts one Event per change of a kind."""

from __future__ import annotations

import uuid
from typing import Any

import pytest
from prometheus_client import REGISTRY

from lunbridge.errors import Unavailable
from lunbridge.hypervisor.router import Router
from lunbridge.models import DiskSource, Phase
from lunbridge.san import Transport
from lunbridge.storage.base import Lun
from lunbridge_operator import naming, ownership
from lunbridge_operator.reconcile import orphans
from lunbridge_operator.reconcile.orphans import Orphan, OrphanKind, Reporter
from tests.fakes import Lab

GiB = 1 << 30
USER_LUN = "user-data"  # a LUN a user made: not lunbridge's naming
NAA32 = "naa.6001405c790a01d57d54736afd6bbc37"


async def _world() -> tuple[Lab, Lun, Lun]:
    """`kept` Ready on node-a (cluster c1), `idle` with no node; an orphan LUN (unmapped), a map
    of kept's LUN to an igroup its status does not name, kept's LUN attached to node-b's VM too;
    and the user's LUN mapped to c1 and attached to node-b's VM. Returns (lab, kept's LUN, the
    orphan LUN)."""
    lab = Lab.build()
    await lab.create_disk("kept", node_name="node-a")
    await lab.create_disk("idle")
    assert lab.disk("kept").status.phase is Phase.READY
    kept = lab.lun("kept")
    storage = lab.storage
    orphan = await storage.create_lun(naming.lun_name(str(uuid.uuid4())), GiB)
    await storage.create_igroup("host-esx-3", Transport.ISCSI, ["iqn.1998-01.com.vmware:esx-3"])
    await storage.map_lun(kept.name, "host-esx-3")
    await lab.hypervisor.attach_rdm(lab.vms["node-b"], kept.naa)
    user = await storage.create_lun(USER_LUN, GiB)
    await storage.map_lun(user.name, "cluster-c1")
    await lab.hypervisor.attach_rdm(lab.vms["node-b"], user.naa)
    return lab, kept, orphan


def _shape(found: list[Orphan]) -> list[tuple[str, str, str, str]]:
    return [(o.kind.value, o.place, o.name, o.naa) for o in found]


async def test_only_the_orphan_lun_map_and_rdm_are_reported() -> None:
    lab, kept, orphan = await _world()
    found = await orphans.find(lab.services)
    assert _shape(found) == [
        ("lun", "backend/lab", orphan.name, orphan.naa),
        ("map", "backend/lab", f"{kept.name} -> host-esx-3", kept.naa),
        ("rdm", "vm/node-b-vm", kept.name, kept.naa),
    ]
    lun, mapping, rdm = found
    assert lun.unused
    assert "no VirtualDisk or DiskSnapshot or DiskGroupSnapshot with uid" in lun.why
    assert "records igroup cluster-c1" in mapping.why
    assert "VirtualDisk kept" in rdm.why
    columns = lun.line().split("\t")
    assert columns[:4] == ["lun", "backend/lab", orphan.name, orphan.naa]
    assert len(columns) == 5


async def test_remove_removes_exactly_the_orphans_and_nothing_owned() -> None:
    lab, kept, orphan = await _world()
    found = await orphans.find(lab.services)
    said: list[str] = []
    left = await orphans.remove(lab.services, found, said.append, include_unmapped=True)
    assert left == []
    storage = lab.storage
    assert orphan.name not in storage.luns
    assert storage.mappings_of(lun=kept.name) == [m for m in storage.maps if m.lun == kept.name]
    assert [m.igroup for m in storage.mappings_of(lun=kept.name)] == ["cluster-c1"]
    assert [r.naa for r in lab.rdms("node-a")] == [kept.naa]  # the owned RDM stays
    assert [r.naa for r in lab.rdms("node-b")] == [storage.luns[USER_LUN].naa]  # so does the user's
    assert [m.igroup for m in storage.mappings_of(lun=USER_LUN)] == ["cluster-c1"]
    assert lab.lun("idle").name in storage.luns
    assert any(text.startswith("detached") for text in said)
    assert any(text.startswith("unmapped") for text in said)
    assert any(text.startswith("deleted") and "snapshots stay" in text for text in said)
    assert await orphans.find(lab.services) == []
    await lab.operator.recheck("kept")
    assert lab.disk("kept").status.phase is Phase.READY


async def test_an_unmapped_orphan_lun_stays_unless_asked_and_a_second_run_is_a_no_op() -> None:
    lab, _, orphan = await _world()
    found = await orphans.find(lab.services)
    said: list[str] = []
    left = await orphans.remove(lab.services, found, said.append)
    assert [o.kind for o in left] == [OrphanKind.LUN]
    assert orphan.name in lab.storage.luns
    assert any("--include-unmapped" in text for text in said)
    again: list[str] = []
    assert await orphans.remove(lab.services, found, again.append) == left  # idempotent
    assert sum("no longer an orphan" in text for text in again) == 2


async def test_a_disk_deleted_the_hard_way_leaves_its_lun_map_and_rdm_as_orphans() -> None:
    lab = Lab.build()
    await lab.create_disk("gone", node_name="node-c")
    lun = lab.lun("gone")
    igroup = lab.disk("gone").status.initiator_group
    del lab.kube.disks["gone"]  # its finalizer removed by hand: no teardown ran
    found = await orphans.find(lab.services)
    assert _shape(found) == [
        ("lun", "backend/lab", lun.name, lun.naa),
        ("map", "backend/lab", f"{lun.name} -> {igroup}", lun.naa),
        ("rdm", "vm/node-c-vm", lun.name, lun.naa),
    ]
    assert not found[0].unused
    rescans = lab.hypervisor.rescans["esx-3"]
    said: list[str] = []
    assert await orphans.remove(lab.services, found, said.append) == []
    assert lun.name not in lab.storage.luns
    assert lab.storage.maps == []
    assert lab.rdms("node-c") == []
    assert lab.hypervisor.rescans["esx-3"] == rescans + 1
    assert said[-1] == "rescanned the HBAs of host esx-3"


async def test_a_disk_in_flight_is_not_judged_until_its_status_settles() -> None:
    lab, _, _ = await _world()
    stored = lab.kube.disks["kept"]
    stored["status"]["phase"] = Phase.ATTACHING.value  # e.g. moving: maps and RDMs change
    found = await orphans.find(lab.services)
    assert [o.kind for o in found] == [OrphanKind.LUN]
    stored["metadata"]["deletionTimestamp"] = "2024-01-01T00:00:00Z"
    stored["status"]["phase"] = Phase.READY.value
    assert [o.kind for o in await orphans.find(lab.services)] == [OrphanKind.LUN]
    del stored["metadata"]["deletionTimestamp"]
    assert [o.kind for o in await orphans.find(lab.services)] == [
        OrphanKind.LUN,
        OrphanKind.MAP,
        OrphanKind.RDM,
    ]


async def test_an_object_created_while_storage_is_read_owns_its_lun() -> None:
    lab = Lab.build()
    await lab.create_disk("d1")
    lun = lab.lun("d1")
    stored = lab.kube.disks.pop("d1")
    calls = 0
    real_list = lab.kube.list

    async def listing(*args: Any, **kwargs: Any) -> Any:
        nonlocal calls
        calls += 1
        if calls == 2:  # the second look, after storage was read
            lab.kube.disks["d1"] = stored
        return await real_list(*args, **kwargs)

    lab.kube.list = listing  # type: ignore[method-assign]
    assert await orphans.find(lab.services) == []
    assert lun.name in lab.storage.luns


async def test_the_ownership_rule_knows_names_snapshots_and_vms() -> None:
    lab = Lab.build()
    await lab.create_disk("origin", node_name="node-a")
    await lab.create_disk("copy", source=DiskSource(virtual_disk="origin"))
    copy_uid = lab.kube.disks["copy"]["metadata"]["uid"]
    # the name the reconcile gave the clone's scaffolding snapshot is the rule's
    [(_, snapshot)] = lab.storage.called("create_snapshot")
    assert snapshot == naming.clone_snapshot_name(copy_uid)
    owners = await ownership.gather(lab.kube)
    assert len(owners) == 2
    copy = owners.of_snapshot(snapshot)
    assert copy is not None
    assert copy.name == "copy"
    origin = owners.of_lun(lab.lun("origin").name)
    assert origin is not None
    assert owners.of_naa(lab.lun("origin").naa) is origin
    assert origin.igroups == {"cluster-c1"}
    vm_a, vm_b = lab.vms["node-a"], lab.vms["node-b"]
    assert origin.holds_vm(vm_a)
    assert not origin.holds_vm(vm_b)
    assert ownership.Owner("VirtualDisk", "x", "u", vms=frozenset({lab.provider_id("node-a")})).holds_vm(vm_a)
    assert ownership.is_lunbridge_lun(naming.lun_name(copy_uid))
    for other in ("vd-not-a-uid", USER_LUN, f"xvd-{copy_uid}", f"{naming.lun_name(copy_uid)}-x"):
        assert not ownership.is_lunbridge_lun(other)


async def test_an_owner_kind_registered_later_counts() -> None:
    lab = Lab.build()
    lun = await lab.storage.create_lun(naming.lun_name(str(uuid.uuid4())), GiB)
    assert [o.lun for o in await orphans.find(lab.services)] == [lun.name]
    lab.kube.objects["verificationclones"] = {"v1": {"metadata": {"name": "v1", "uid": "1"}}}

    def claims(obj: Any) -> ownership.Owner:
        return ownership.Owner("VerificationClone", obj["metadata"]["name"], "1", frozenset({lun.name}))

    kinds = [*ownership.OWNER_KINDS, ownership.OwnerKind("VerificationClone", "verificationclones", claims)]
    assert await orphans.find(lab.services, kinds) == []


def _gauge(kind: str, backend: str = "lab") -> float | None:
    return REGISTRY.get_sample_value("lunbridge_orphans", {"kind": kind, "backend": backend})


async def test_the_reporter_sets_the_gauge_and_posts_one_event_per_kind_change() -> None:
    lab, _, _ = await _world()
    posted: list[tuple[str, str, bool]] = []

    async def announce(reason: str, message: str, warning: bool) -> None:
        posted.append((reason, message, warning))

    reporter = Reporter(announce, lab.services.backends.names)
    await orphans.sweep_once(lab.services, reporter)
    assert [(r, w) for r, _, w in posted] == [
        ("OrphanLuns", True),
        ("OrphanMaps", True),
        ("OrphanRdms", True),
    ]
    assert "1 orphan RDM" in posted[2][1]
    assert "vm/node-b-vm" in posted[2][1]
    assert (_gauge("lun"), _gauge("map"), _gauge("rdm")) == (1.0, 1.0, 1.0)

    await orphans.sweep_once(lab.services, reporter)  # nothing changed: no Event
    assert len(posted) == 3

    found = await orphans.find(lab.services)
    await orphans.remove(lab.services, [o for o in found if o.kind is OrphanKind.RDM], lambda _: None)
    await orphans.sweep_once(lab.services, reporter)
    assert posted[3:] == [("OrphansGone", "no orphan RDM is left", False)]
    assert (_gauge("lun"), _gauge("map"), _gauge("rdm")) == (1.0, 1.0, 0.0)


async def test_a_failed_sweep_is_logged_and_counted_not_raised() -> None:
    lab, _, _ = await _world()
    posted: list[str] = []

    async def announce(reason: str, message: str, warning: bool) -> None:
        posted.append(reason)

    before = REGISTRY.get_sample_value("lunbridge_orphan_sweeps_total", {"result": "failed"}) or 0.0
    lab.storage.fail_next("list_luns", Unavailable("tgtd is down"))
    await orphans.sweep_once(lab.services, Reporter(announce))
    assert posted == []
    assert REGISTRY.get_sample_value("lunbridge_orphan_sweeps_total", {"result": "failed"}) == before + 1


def test_an_event_message_stays_short() -> None:
    many = [
        Orphan(OrphanKind.LUN, "lab", naming.lun_name(str(uuid.uuid4())), "naa.6", "why") for _ in range(50)
    ]
    text = orphans._message(OrphanKind.LUN, many)
    assert text.startswith("50 orphan LUNs")
    assert len(text) <= orphans.MESSAGE_LIMIT
    assert text.endswith("more")


async def test_the_router_lists_lun_disks_and_remembers_their_vms() -> None:
    lab, kept, _ = await _world()
    router = Router({"vsphere": lab.hypervisor})
    disks = await router.list_lun_disks()
    assert {(d.vm.name, d.naa) for d in disks} >= {("node-a-vm", kept.naa), ("node-b-vm", kept.naa)}
    await router.detach_rdm(lab.vms["node-b"], kept.naa)  # found through the listing
    assert kept.naa not in {r.naa for r in lab.rdms("node-b")}


# --- the command -----------------------------------------------------------------------------------
@pytest.mark.parametrize(
    ("device", "lun_uuid"),
    [
        (f"/vmfs/devices/disks/{NAA32}", ""),
        ("/vmfs/devices/disks/vml.02000100006001405c790a01d57d54736afd6bbc37564952545541", ""),
        ("", "02000100006001405c790a01d57d54736afd6bbc37564952545541"),
    ],
    ids=["device-name", "vml-path", "lun-uuid"],
)
def test_an_rdm_names_its_naa_in_every_spelling(device: str, lun_uuid: str) -> None:
    from lunbridge.hypervisor.vsphere.slots import Rdm, rdm_is_lun, rdm_naa

    rdm = Rdm(key=2001, controller_key=1000, unit=1, device_name=device, lun_uuid=lun_uuid,
              compatibility_mode="physicalMode")  # fmt: skip
    assert rdm_naa(rdm) == NAA32
    assert rdm_is_lun(rdm, NAA32)
    assert rdm_naa(Rdm(1, 1000, 1, "/vmfs/devices/disks/t10.ATA_disk", "", "physicalMode")) is None


class _Domain:
    def __init__(self, name: str, uuid_text: str, xml: str) -> None:
        self._name, self._uuid, self.xml = name, uuid_text, xml

    def name(self) -> str:
        return self._name

    def UUIDString(self) -> str:
        return self._uuid

    def isActive(self) -> int:
        return 1

    def isPersistent(self) -> int:
        return 0

    def XMLDesc(self, flags: int) -> str:
        return self.xml


class _Conn:
    def __init__(self, domains: list[_Domain]) -> None:
        self.domains = domains

    def listAllDomains(self, flags: int) -> list[_Domain]:
        return self.domains


def test_libvirt_lists_the_passthrough_disks_lunbridge_attached() -> None:
    from lunbridge.hypervisor.base import Host
    from lunbridge.hypervisor.libvirt import inventory
    from lunbridge.hypervisor.libvirt.domain import DriveAddress, disk_xml
    from lunbridge.hypervisor.libvirt.refs import Portal

    ours = disk_xml(NAA32, DriveAddress(0, 0, 1, 0), Portal("127.0.0.1", 3260), "iqn.2024-01.x:t", 1,
                    "iqn.2024-01.x:host", "sdb")  # fmt: skip
    theirs = ours.replace("ua-lunbridge-", "ua-someone-").replace("sdb", "sdc")
    xml = (f"<domain><name>g1</name><devices><controller type='scsi' index='0' model='virtio-scsi'/>"
           f"{ours}{theirs}</devices></domain>")  # fmt: skip
    host = Host("kvm", "libvirt:qemu:///system", None)
    uid = "8e2c3a4f-0000-4000-8000-000000000001"
    [(vm, state)] = inventory.list_states(_Conn([_Domain("g1", uid, xml)]), host)
    assert (vm.name, vm.id, vm.host) == ("g1", f"libvirt:{uid}", host)
    assert [d.naa for d in state.devices.scsi] == [NAA32, None]
