"""The simulator through netapp-ontap's own client: the calls lunbridge makes, their answers,
jobs, paging and ONTAP's error codes."""

from __future__ import annotations

import http.client
import time
from typing import Any, cast

import pytest
from netapp_ontap.error import NetAppRestError
from netapp_ontap.host_connection import HostConnection
from netapp_ontap.resources.igroup import Igroup
from netapp_ontap.resources.iscsi_service import IscsiService
from netapp_ontap.resources.job import Job
from netapp_ontap.resources.lun import Lun
from netapp_ontap.resources.lun_map import LunMap
from netapp_ontap.resources.snapshot import Snapshot
from netapp_ontap.resources.svm import Svm
from netapp_ontap.resources.volume import Volume

from tests.integration.ontap_sim.conftest import PAGE_SIZE, error_of
from tests.lab.ontap.lab import OntapSim, request

pytestmark = pytest.mark.peers
MIB = 1 << 20


def _volume(sim: OntapSim, name: str, size: int = 1 << 30) -> Volume:
    vol = Volume(
        name=name,
        svm={"name": sim.svm},
        aggregates=[{"name": "aggr1"}],
        size=size,
        guarantee={"type": "none"},
        snapshot_policy={"name": "none"},
    )
    vol.post(poll=True)
    return vol


def _lun(sim: OntapSim, path: str, size: int) -> Lun:
    lun = Lun(
        name=path,
        os_type="linux",
        space={"size": size, "guarantee": {"requested": False}},
        svm={"name": sim.svm},
    )
    lun.post(hydrate=True)
    return lun


def _resized(uuid: str, size: int) -> Lun:
    """A LUN whose size is to change (netapp-ontap sends only what changed after construction)."""
    lun: Any = Lun(uuid=uuid)  # netapp-ontap declares no attribute types
    lun.space = {"size": size}
    return cast(Lun, lun)


def _fails(call: object, *args: object, **kwargs: object) -> tuple[int, dict[str, str]]:
    assert callable(call)
    with pytest.raises(NetAppRestError) as caught:
        call(*args, **kwargs)
    return error_of(caught.value)


def test_san_calls_answer_as_ontap(ontap: OntapSim, conn: HostConnection) -> None:
    with conn:
        svm = next(iter(Svm.get_collection(name=ontap.svm, fields="aggregates")))
        assert svm.aggregates[0].name == "aggr1"
        assert svm.aggregates[0].available_size > 0
        service = IscsiService(svm={"uuid": svm.uuid})
        service.get(fields="target.name")
        assert service.target.name.startswith("iqn.1992-08.com.netapp:sn.")

        vol = _volume(ontap, "lb_conf")
        lun = _lun(ontap, "/vol/lb_conf/disk-1", 10_000_000)
        serial = lun.serial_number
        assert len(serial) == 12
        assert not serial.isalnum()
        assert lun.space.size == 10 * MIB  # rounded up to a whole MiB
        assert lun.location.volume.name == "lb_conf"

        igroup = Igroup(
            name="host-a", protocol="iscsi", os_type="linux", svm={"name": ontap.svm},
            initiators=[{"name": "iqn.1998-01.com.vmware:host-a"}],
        )  # fmt: skip
        igroup.post()
        lun_map = LunMap(igroup={"name": "host-a"}, lun={"name": lun.name}, svm={"name": ontap.svm})
        lun_map.post(hydrate=True)
        assert lun_map.logical_unit_number == 1

        status, error = _fails(_lun, ontap, "/vol/lb_conf/disk-1", 10 * MIB)
        assert (status, error["code"], error["target"]) == (409, "5374242", "name")
        status, error = _fails(_resized(lun.uuid, 5 * MIB).patch)
        assert error["code"] == "5374892"
        status, error = _fails(_resized(lun.uuid, 10 * MIB).patch)
        assert error["code"] == "1254226"
        assert _fails(Lun(uuid=lun.uuid).delete)[1]["code"] == "1254197"
        assert _fails(Igroup(uuid=igroup.uuid).delete)[1]["code"] == "1254213"
        again = LunMap(igroup={"name": "host-a"}, lun={"name": lun.name}, svm={"name": ontap.svm})
        assert _fails(again.post)[1]["code"] == "1254207"
        _resized(lun.uuid, 20 * MIB).patch()
        lun.get(fields="space.size,lun_maps")
        assert lun.space.size == 20 * MIB
        assert lun.lun_maps[0].igroup.name == "host-a"

        LunMap(lun={"uuid": lun.uuid}, igroup={"uuid": igroup.uuid}).delete()
        assert (
            _fails(LunMap(lun={"uuid": lun.uuid}, igroup={"uuid": igroup.uuid}).delete)[1]["code"]
            == "5374922"
        )

        snap = Snapshot(vol.uuid, name="snap-1")
        snap.post(poll=True)
        clone = Volume(
            name="lb_conf_clone", svm={"name": ontap.svm},
            clone={
                "is_flexclone": True,
                "parent_volume": {"name": "lb_conf"},
                "parent_snapshot": {"name": "snap-1"},
            },
        )  # fmt: skip
        clone.post(poll=True)
        cloned = next(iter(Lun.get_collection(name="/vol/lb_conf_clone/*", fields="serial_number")))
        assert cloned.serial_number != serial  # a FlexClone's LUN gets a NEW serial
        busy = request(
            ontap, "DELETE", f"/api/storage/volumes/{vol.uuid}/snapshots/{snap.uuid}?return_timeout=10"
        )
        assert busy[0] == 400
        assert busy[1]["error"]["code"] == "1638555"
        split: Any = Volume(uuid=clone.uuid)
        split.clone = {"split_initiated": True}
        split.patch(poll=True)
        Snapshot(vol.uuid, uuid=snap.uuid).delete(poll=True)
        assert _fails(Snapshot(vol.uuid, uuid=snap.uuid).delete)[1]["code"] == "1638600"


def test_paging_follows_next_links(ontap: OntapSim, conn: HostConnection) -> None:
    with conn:
        _volume(ontap, "lb_pages")
        made = {_lun(ontap, f"/vol/lb_pages/lun{i}", 4 * MIB).uuid for i in range(5)}
        _volume(ontap, "lb_other")
        _lun(ontap, "/vol/lb_other/lun0", 4 * MIB)
        seen = [lun.uuid for lun in Lun.get_collection(name="/vol/lb_pages/*", fields="serial_number")]
        assert sorted(seen) == sorted(made)
    status, page = request(ontap, "GET", "/api/storage/luns?name=/vol/lb_pages/*")
    assert status == 200
    assert page["num_records"] == PAGE_SIZE
    assert "next" in page["_links"]


def test_jobs_and_fault_knobs(ontap: OntapSim, conn: HostConnection) -> None:
    body = {
        "name": "lb_jobs",
        "svm": {"name": ontap.svm},
        "aggregates": [{"name": "aggr1"}],
        "size": 100 * MIB,
    }
    status, answer = request(ontap, "POST", "/api/storage/volumes", body)
    assert status == 202
    uuid = answer["job"]["uuid"]
    with conn:
        job = Job(uuid=uuid)
        deadline = time.monotonic() + 10
        while job.get() and job.state not in ("success", "failure"):
            assert time.monotonic() < deadline
            time.sleep(0.05)
        assert job.state == "success"

        status, answer = request(ontap, "POST", "/api/storage/volumes?return_timeout=10", body)
        assert status == 409  # the job failed within the timeout: its error is the answer
        assert answer["error"]["code"] == "1"

        request(ontap, "POST", "/_sim/faults", {"job_fails": {"code": "917534", "message": "too small"}})
        vol = next(iter(Volume.get_collection(name="lb_jobs")))
        response = Snapshot(vol.uuid, name="s1").post(poll=False)
        link = response.http_response.json()["job"]["_links"]["self"]["href"]
        failed = Job(uuid=link.rsplit("/", 1)[1])
        while failed.get() and failed.state not in ("success", "failure"):
            time.sleep(0.05)
        assert (failed.state, failed.code, failed.message) == ("failure", 917534, "too small")

        request(
            ontap,
            "POST",
            "/_sim/faults",
            {"fail_next": {"method": "GET", "path": "/api/storage/luns", "status": 503}},
        )
        assert _fails(lambda: list(Lun.get_collection()))[0] == 503
        assert list(Lun.get_collection()) == []

    request(ontap, "POST", "/_sim/faults", {"drop_next_connection": True})
    with pytest.raises(http.client.RemoteDisconnected):  # the connection closes with no answer
        request(ontap, "GET", "/api/cluster")
    assert request(ontap, "GET", "/api/cluster")[0] == 200
