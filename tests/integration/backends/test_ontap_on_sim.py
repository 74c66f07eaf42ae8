"""What only the ontap backend does, against the lab's ONTAP simulator (whose fault knobs these
tests use, so they do not run against a real cluster): restores that would delete newer
snapshots, a disk's FlexVol outliving it while snapshots remain, failed and slow jobs, wrong
credentials and certificates, portals from the SVM's data interfaces, CHAP per initiator, and
the refusal of group snapshots."""

from __future__ import annotations

import asyncio
import os
import subprocess
import time
from collections.abc import AsyncIterator, Iterator
from pathlib import Path
from typing import Any

import pytest

from lunbridge.errors import AlreadyExists, Busy, Conflict, InvalidArgument, Unauthenticated, Unavailable
from lunbridge.san import Transport
from lunbridge.storage import factory
from lunbridge.storage.base import Chap
from lunbridge.storage.ontap import OntapBackend
from lunbridge.storage.ontap.core import comment
from tests.integration.backends import seen
from tests.integration.backends.conftest import ontap_section
from tests.lab.ontap import lab as ontap_lab

pytestmark = pytest.mark.peers
MIB = 1 << 20
HOST = "iqn.1998-01.com.vmware:ontap-sim-host"


@pytest.fixture
def sim(ontap_sim: ontap_lab.OntapSim | None) -> Iterator[ontap_lab.OntapSim]:
    assert ontap_sim is not None, "these tests need the simulator (make contract-ontap runs test_contract.py)"
    yield ontap_sim
    ontap_lab.request(ontap_sim, "DELETE", "/_sim/faults")


@pytest.fixture
async def ontap(sim: ontap_lab.OntapSim, tmp_path: Path) -> AsyncIterator[OntapBackend]:
    backend = factory.build(ontap_section(sim, tmp_path, jobTimeoutSeconds=5))
    assert isinstance(backend, OntapBackend)
    yield backend
    await backend.close()


def _fault(sim: ontap_lab.OntapSim, **knob: Any) -> None:
    status, answer = ontap_lab.request(sim, "POST", "/_sim/faults", knob)
    assert status == 200, answer


def _volumes(sim: ontap_lab.OntapSim, name: str) -> list[str]:
    status, answer = ontap_lab.request(sim, "GET", f"/api/storage/volumes?name={name}")
    assert status == 200, answer
    return [str(r["name"]) for r in answer["records"]]


async def test_a_restore_that_would_delete_newer_snapshots_is_refused(ontap: OntapBackend, tag: str) -> None:
    lun = await ontap.create_lun(f"keep-{tag}", 16 * MIB)
    await ontap.create_snapshot(lun.name, f"first-{tag}")
    await ontap.create_snapshot(lun.name, f"second-{tag}")
    with pytest.raises(Conflict, match=f"second-{tag} of LUN {lun.name} are newer than first-{tag}"):
        await ontap.revert_lun(lun.name, f"first-{tag}")
    assert {s.name for s in await ontap.list_snapshots(lun.name)} == {f"first-{tag}", f"second-{tag}"}
    await ontap.revert_lun(lun.name, f"second-{tag}")  # the newest may be restored
    await ontap.delete_snapshot(f"second-{tag}")
    assert (await ontap.revert_lun(lun.name, f"first-{tag}")).naa == lun.naa
    await ontap.delete_snapshot(f"first-{tag}")
    await ontap.delete_lun(lun.name)


async def test_a_deleted_disk_keeps_its_flexvol_until_its_last_snapshot_goes(
    ontap: OntapBackend, sim: ontap_lab.OntapSim, tag: str
) -> None:
    lun = await ontap.create_lun(f"gone-{tag}", 16 * MIB)
    volume = ontap.volume_name(lun.name)
    await ontap.create_snapshot(lun.name, f"kept-{tag}")
    await ontap.delete_lun(lun.name)
    assert _volumes(sim, volume) == [volume]
    assert [(s.name, s.lun) for s in await ontap.list_snapshots()
            if s.name == f"kept-{tag}"] == [(f"kept-{tag}", lun.name)]  # fmt: skip
    clone = await ontap.clone_lun(f"kept-{tag}", f"reborn-{tag}")
    assert clone.naa != lun.naa
    await ontap.delete_snapshot(f"kept-{tag}")
    assert _volumes(sim, volume) == []
    assert (await ontap.get_lun(clone.name)).naa == clone.naa  # a split clone stands alone
    await ontap.delete_lun(clone.name)
    assert _volumes(sim, ontap.volume_name(clone.name)) == []


async def test_a_failed_job_is_the_error_of_its_step_and_leaves_nothing(
    ontap: OntapBackend, sim: ontap_lab.OntapSim, tag: str
) -> None:
    _fault(sim, job_fails={"code": "917534", "message": "Volume size is too small."})
    with pytest.raises(
        InvalidArgument, match=r"creating FlexVol .*Volume size is too small\. \(code 917534\)"
    ):
        await ontap.create_lun(f"failed-{tag}", 16 * MIB)
    assert _volumes(sim, ontap.volume_name(f"failed-{tag}")) == []
    made = await ontap.create_lun(f"failed-{tag}", 16 * MIB)  # the retry does it all
    await ontap.delete_lun(made.name)


async def test_a_job_that_outlives_its_bound_is_busy_and_the_retry_finds_its_work(
    sim: ontap_lab.OntapSim, tmp_path: Path, tag: str
) -> None:
    backend = factory.build(ontap_section(sim, tmp_path, jobTimeoutSeconds=1))
    _fault(sim, job_delay=12)  # past the 10 s ONTAP is asked to hold its answer
    try:
        started = time.monotonic()
        with pytest.raises(Busy, match=r"still (queued|running) after 1 s \(jobTimeoutSeconds\)"):
            await backend.create_lun(f"slow-{tag}", 16 * MIB)
        assert time.monotonic() - started < 20
        _fault(sim, job_delay=0.2)
        deadline = time.monotonic() + 30
        while not _volumes(sim, backend.volume_name(f"slow-{tag}")):  # type: ignore[attr-defined]
            assert time.monotonic() < deadline, "the slow job never finished"
            await asyncio.sleep(0.5)
        made = await backend.create_lun(f"slow-{tag}", 16 * MIB)
        assert made.size_bytes >= 16 * MIB
        await backend.delete_lun(made.name)
    finally:
        await backend.close()


async def test_a_wrong_password_or_certificate_is_refused_and_never_quoted(
    sim: ontap_lab.OntapSim, tmp_path: Path
) -> None:
    wrong = factory.build(ontap_section(sim, tmp_path, password="not-the-password-71"))
    with pytest.raises(Unauthenticated) as refused:
        await wrong.pools()
    assert "not-the-password-71" not in str(refused.value)
    assert sim.password not in str(refused.value)
    await wrong.close()

    untrusted = factory.build(ontap_section(sim, tmp_path, caFile=None))
    with pytest.raises(Unavailable, match="TLS verification failed"):
        await untrusted.pools()
    await untrusted.close()
    unchecked = factory.build(ontap_section(sim, tmp_path, caFile=None, tlsVerify=False))
    assert [p.name for p in await unchecked.pools()]  # only when asked for by name
    await unchecked.close()


async def test_portals_come_from_the_svms_iscsi_interfaces(
    sim: ontap_lab.OntapSim, tmp_path: Path, tag: str
) -> None:
    backend = factory.build(ontap_section(sim, tmp_path, dataInterfaces=None))
    try:
        ip = sim.portal.rsplit(":", 1)[0]
        assert [p.address for p in await backend.portals()] == [f"{ip}:3260"]
        await backend.create_igroup(f"node-{tag}", Transport.ISCSI, [HOST], "linux")
        [portal] = await backend.login_portals(f"node-{tag}")
        assert portal.target is not None
        assert portal.target.startswith("iqn.1992-08.com.netapp:sn.")  # the SVM's one target
        await backend.delete_igroup(f"node-{tag}")
    finally:
        await backend.close()


def _login(sim: ontap_lab.OntapSim, target: str, chap: Chap | None) -> str:
    env = {k: v for k, v in os.environ.items() if not k.startswith("LIBISCSI_CHAP_")}
    if chap is not None:
        env |= {"LIBISCSI_CHAP_USERNAME": chap.user, "LIBISCSI_CHAP_PASSWORD": chap.secret}
    done = subprocess.run(["iscsi-inq", "-i", HOST, f"iscsi://{sim.portal}/{target}/1"],
                          capture_output=True, text=True, timeout=30, env=env, check=False)  # fmt: skip
    return "ok" if done.returncode == 0 and "DIRECT_ACCESS" in done.stdout else done.stdout + done.stderr


async def test_chap_is_set_on_every_initiator_and_required_at_login(
    ontap: OntapBackend, sim: ontap_lab.OntapSim, tag: str
) -> None:
    group = f"chap-{tag}"
    lun = await ontap.create_lun(f"chap-{tag}", 16 * MIB)
    await ontap.create_igroup(group, Transport.ISCSI, [HOST], "linux")
    await ontap.map_lun(lun.name, group)
    target = sim.target(group)
    assert _login(sim, target, None) == "ok"
    chap = Chap(f"user-{tag}", "initiator-secret-9")
    await ontap.set_chap(group, chap)
    await ontap.set_chap(group, chap)  # idempotent
    assert _login(sim, target, chap) == "ok"
    assert "Authentication failure" in _login(sim, target, None)
    await ontap.set_chap(group, None)
    assert _login(sim, target, None) == "ok"
    await ontap.unmap_lun(lun.name, group)
    await ontap.delete_lun(lun.name)
    await ontap.delete_igroup(group)


async def test_group_snapshots_are_refused_naming_why(ontap: OntapBackend) -> None:
    with pytest.raises(Conflict, match="consistency groups"):
        await ontap.create_group_snapshot({"vd-a": "dg-a", "vd-b": "dg-b"})


async def test_what_a_host_sees_of_a_lun_is_its_ontap_naa(
    ontap: OntapBackend, sim: ontap_lab.OntapSim, tag: str
) -> None:
    lun = await ontap.create_lun(f"naa-{tag}", 16 * MIB)
    assert lun.naa == "naa.600a0980" + lun.serial.encode().hex()
    await ontap.create_igroup(f"naa-{tag}", Transport.ISCSI, [HOST])
    await ontap.map_lun(lun.name, f"naa-{tag}")
    where = seen.reach([sim.portal], HOST, lun.naa)
    assert where.target == sim.target(f"naa-{tag}")
    await ontap.unmap_lun(lun.name, f"naa-{tag}")
    await ontap.delete_lun(lun.name)
    await ontap.delete_igroup(f"naa-{tag}")


async def test_an_fcp_igroup_holds_wwpns_and_takes_maps(ontap: OntapBackend, tag: str) -> None:
    """ONTAP masks to FC hosts too (the simulator records FC maps; it has no FC data plane)."""
    wwpns = ["20:00:00:25:b5:aa:00:01", "20:00:00:25:b5:bb:00:01"]
    group = await ontap.create_igroup(f"fc-{tag}", Transport.FCP, wwpns, "vmware")
    assert (group.transport, group.initiators, group.os_type) == (Transport.FCP, tuple(wwpns), "vmware")
    with pytest.raises(AlreadyExists):
        await ontap.create_igroup(f"fc-{tag}", Transport.ISCSI, [HOST])
    lun = await ontap.create_lun(f"fc-{tag}", 16 * MIB)
    mapping = await ontap.map_lun(lun.name, f"fc-{tag}", 7)
    assert mapping.lun_id == 7
    assert await ontap.list_mappings(igroup=f"fc-{tag}") == [mapping]
    with pytest.raises(InvalidArgument, match="FCP igroup"):
        await ontap.set_chap(f"fc-{tag}", Chap(f"user-{tag}", "initiator-secret-9"))
    await ontap.unmap_lun(lun.name, f"fc-{tag}")
    await ontap.delete_lun(lun.name)
    await ontap.delete_igroup(f"fc-{tag}")


def _call(sim: ontap_lab.OntapSim, method: str, path: str, body: object = None) -> dict[str, Any]:
    """One REST call straight to the simulator (what a crash leaves, made by hand), waited for."""
    status, answer = ontap_lab.request(sim, method, path, body)
    assert status in (200, 201, 202), answer
    job = answer.get("job", {}).get("uuid") if isinstance(answer, dict) else None
    deadline = time.monotonic() + 30
    while job is not None:
        _, state = ontap_lab.request(sim, "GET", f"/api/cluster/jobs/{job}?fields=state,message")
        if state["state"] in ("success", "failure"):
            assert state["state"] == "success", state
            break
        assert time.monotonic() < deadline, state
        time.sleep(0.2)
    return dict(answer)


def _volume(sim: ontap_lab.OntapSim, name: str) -> dict[str, Any]:
    status, answer = ontap_lab.request(sim, "GET", f"/api/storage/volumes?name={name}&fields=uuid,clone")
    assert status == 200, answer
    [record] = answer["records"]
    return dict(record)


async def test_a_clone_cut_short_by_a_crash_is_finished_by_the_retry(
    ontap: OntapBackend, sim: ontap_lab.OntapSim, tag: str
) -> None:
    origin = await ontap.create_lun(f"origin-{tag}", 16 * MIB)
    await ontap.create_snapshot(origin.name, f"base-{tag}")
    parent = ontap.volume_name(origin.name)
    for name, renamed in ((f"crash-a-{tag}", False), (f"crash-b-{tag}", True)):
        volume = ontap.volume_name(name)  # the FlexClone made before the crash
        _call(sim, "POST", "/api/storage/volumes", {
            "name": volume, "svm": {"name": sim.svm}, "comment": comment(lun=name, size=16 * MIB),
            "clone": {"is_flexclone": True, "parent_volume": {"name": parent},
                      "parent_snapshot": {"name": f"base-{tag}"}},
        })  # fmt: skip
        if renamed:  # ... and its LUN renamed, but not yet split
            _, found = ontap_lab.request(sim, "GET", f"/api/storage/luns?name=/vol/{volume}/*")
            change = {"name": f"/vol/{volume}/{name}", "comment": comment(pool="aggr1", source=f"base-{tag}")}
            _call(sim, "PATCH", f"/api/storage/luns/{found['records'][0]['uuid']}", change)
        assert _volume(sim, volume)["clone"]["is_flexclone"] is True
        with pytest.raises(Busy, match="split"):
            await ontap.delete_snapshot(f"base-{tag}")  # the unsplit clone holds it
        clone = await ontap.clone_lun(f"base-{tag}", name)
        assert clone.naa != origin.naa
        assert clone.source_snapshot == f"base-{tag}"
        assert [lun.name for lun in await ontap.list_luns() if lun.name.startswith("crash-")][-1] == name
        assert _volume(sim, volume)["clone"].get("is_flexclone") is not True  # split now
    await ontap.delete_snapshot(f"base-{tag}")
    for name in (f"crash-a-{tag}", f"crash-b-{tag}", origin.name):
        await ontap.delete_lun(name)
        assert _volumes(sim, ontap.volume_name(name)) == []


async def test_deleting_a_disk_takes_a_flexvol_a_crash_left_without_its_lun(
    ontap: OntapBackend, sim: ontap_lab.OntapSim, tag: str
) -> None:
    name = f"half-{tag}"
    volume = ontap.volume_name(name)
    _call(sim, "POST", "/api/storage/volumes", {
        "name": volume, "svm": {"name": sim.svm}, "aggregates": [{"name": "aggr1"}], "size": 256 * MIB,
        "comment": comment(lun=name, size=16 * MIB),
    })  # fmt: skip
    assert name not in [lun.name for lun in await ontap.list_luns()]
    await ontap.delete_lun(name)  # a missing LUN is success, and its FlexVol goes
    assert _volumes(sim, volume) == []
