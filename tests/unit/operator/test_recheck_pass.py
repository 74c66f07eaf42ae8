"""The re-check pass over every Ready disk (handlers.recheck): one listing of each layer finds
the disks that drifted behind lunbridge's back, only those are reconciled (and repaired), the
others cost nothing of their own; a disk whose status lags its spec is reconciled; and a
replica that kopf would pause acts on nothing."""

from __future__ import annotations

from dataclasses import replace
from typing import Any, cast

import kopf
import pytest

from lunbridge.hypervisor.base import Scope
from lunbridge.models import Phase
from lunbridge_operator.handlers import recheck
from lunbridge_operator.handlers.virtualdisk import Seen, reconcile_disk, seen_of
from lunbridge_operator.reconcile import recheck as recheck_rules
from tests.fakes import Lab


def seen(raw: dict[str, Any], at: float) -> Seen:
    """`raw` as the index keeps it, changed at `at` (monotonic)."""
    return replace(seen_of(kopf.Body(cast(kopf.RawBody, raw))), at=at)


def index(lab: Lab, *names: str, at: float = 0.0) -> dict[str, list[Seen]]:
    """The VirtualDisk index as kopf keeps it, every disk last changed at `at`."""
    return {name: [seen(lab.kube.read("virtualdisks", name), at)] for name in names}


async def test_one_pass_repairs_the_disk_that_drifted_and_only_that_one() -> None:
    lab = Lab.build(default_scope=Scope.HOST)
    for name, node in (("d1", "node-a"), ("d2", "node-a"), ("d3", "node-c"), ("d4", None)):
        await lab.create_disk(name, node_name=node)
    del lab.hypervisor.vms[lab.vms["node-a"].id].rdms[lab.lun("d2").naa]  # removed in vCenter by hand
    calls = len(lab.hypervisor.calls), len(lab.storage.calls)

    with lab.operator.posting():
        work = await recheck.once(lab.operator.memo, index(lab, "d1", "d2", "d3", "d4"), full=True)

    assert list(work) == ["d2"]
    assert work["d2"].reason == "RdmMissing"
    assert work["d2"].message == f"VM node-a-vm has no RDM of {lab.lun('d2').naa}"
    assert lab.lun("d2").naa in [r.naa for r in lab.rdms("node-a")]
    assert "Attached" in lab.operator.reasons("d2")
    # the others cost the listings, and no call of their own
    attached = [c.args[1] for c in lab.hypervisor.calls[calls[0] :] if c.method == "attach_rdm"]
    assert attached == [lab.lun("d2").naa]
    per_lun = [c.args[0] for c in lab.storage.calls[calls[1] :] if c.method in ("get_lun", "map_lun")]
    assert set(per_lun) == {lab.lun("d2").name}
    for name in ("d1", "d3", "d4"):
        assert lab.disk(name).status.phase is Phase.READY


async def test_a_pass_over_untouched_disks_reconciles_none_and_writes_nothing() -> None:
    lab = Lab.build()
    for name, node in (("d1", "node-a"), ("d2", "node-c"), ("d3", None)):
        await lab.create_disk(name, node_name=node)
    writes = len(lab.kube.called("patch_status"))
    before = len(lab.hypervisor.calls)
    work = await recheck.once(lab.operator.memo, index(lab, "d1", "d2", "d3"), full=True)
    assert work == {}
    assert len(lab.kube.called("patch_status")) == writes
    methods = {c.method for c in lab.hypervisor.calls[before:]}
    assert methods <= {"list_lun_disks", "find_vm", "cluster_hosts", "sees_lun"}
    within = recheck_rules.HOST_LISTING_PERIODS * lab.services.resync_seconds
    assert {args[2] for args in lab.hypervisor.called("sees_lun")[-3:]} == {within}


async def test_a_disk_whose_status_lags_its_spec_is_reconciled_once_unchanged_for_a_tick() -> None:
    lab = Lab.build()
    await lab.create_disk("d1", node_name="node-a")
    raw = lab.kube.read("virtualdisks", "d1")
    raw["metadata"]["generation"] = raw["metadata"]["generation"] + 1  # a spec change kopf skipped
    lagging = {"d1": [seen(raw, 1e18)]}
    assert await recheck.once(lab.operator.memo, lagging, full=False) == {}  # changed a moment ago
    lagging = {"d1": [seen(raw, 0.0)]}
    with lab.operator.posting():
        work = await recheck.once(lab.operator.memo, lagging, full=False)
    assert list(work) == ["d1"]


@pytest.mark.parametrize(
    ("peers", "acts"),
    [
        ({}, True),
        ({"me": 5, "other": 3}, True),
        ({"me": 5, "other": 5}, False),
        ({"me": 5, "other": 9}, False),
    ],
)
async def test_the_pass_acts_only_where_kopf_would_not_pause(peers: dict[str, int], acts: bool) -> None:
    class Peering:
        async def live_peers(self, peering: str) -> dict[str, int]:
            return peers

    memo: Any = kopf.Memo(config=_Config(standalone=False, priority=5), identity="me", peering=Peering())
    assert await recheck.active(memo) is acts
    memo.config = _Config(standalone=True, priority=5)
    assert await recheck.active(memo) is True


class _Config:
    peering = "lunbridge"

    def __init__(self, *, standalone: bool, priority: int) -> None:
        self.standalone, self.priority = standalone, priority


async def test_a_reconcile_that_breaks_does_not_stop_the_others(monkeypatch: pytest.MonkeyPatch) -> None:
    lab = Lab.build()
    for name in ("d1", "d2"):
        await lab.create_disk(name, node_name="node-a")
    for name in ("d1", "d2"):
        del lab.hypervisor.vms[lab.vms["node-a"].id].rdms[lab.lun(name).naa]
    real = reconcile_disk

    async def breaks_on_d1(disk: Any, body: Any, memo: Any, retry: int, *, drift: Any = None) -> None:
        if disk.name == "d1":
            raise RuntimeError("a bug")
        await real(disk, body, memo, retry, drift=drift)

    monkeypatch.setattr(recheck, "reconcile_disk", breaks_on_d1)
    with lab.operator.posting():
        work = await recheck.once(lab.operator.memo, index(lab, "d1", "d2"), full=True)
    assert sorted(work) == ["d1", "d2"]
    assert lab.lun("d2").naa in [r.naa for r in lab.rdms("node-a")]
