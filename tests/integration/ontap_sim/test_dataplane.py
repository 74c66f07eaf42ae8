"""The simulator's data plane: what initiators see through tgtd, read with libiscsi's tools and
QEMU's initiator under chosen IQNs — masking, the NAA, sizes, bytes after a restore, and the
state put back after restarts of the simulator and of tgtd."""

from __future__ import annotations

import subprocess
from pathlib import Path
from typing import Any

import pytest
from netapp_ontap.host_connection import HostConnection
from netapp_ontap.resources.igroup import Igroup
from netapp_ontap.resources.lun import Lun
from netapp_ontap.resources.lun_map import LunMap
from netapp_ontap.resources.snapshot import Snapshot
from netapp_ontap.resources.volume import Volume

from tests.integration.ontap_sim.conftest import assert_no_bug, connect
from tests.integration.storage import iscsi
from tests.lab import tgt as tgt_module
from tests.lab.ontap import lab as ontap_lab
from tests.lab.ontap.lab import OntapSim, request

pytestmark = pytest.mark.peers
MIB = 1 << 20
IQN_A = "iqn.1998-01.com.vmware:ontapsim-host-a"
IQN_B = "iqn.1998-01.com.vmware:ontapsim-host-b"


def _setup(sim: OntapSim, vol_name: str, size: int = 64 * MIB) -> tuple[Volume, Lun, Igroup]:
    vol = Volume(name=vol_name, svm={"name": sim.svm}, aggregates=[{"name": "aggr1"}], size=1 << 30)
    vol.post(poll=True)
    lun = Lun(name=f"/vol/{vol_name}/disk", os_type="vmware", space={"size": size}, svm={"name": sim.svm})
    lun.post(hydrate=True)
    group_a = Igroup(
        name="host_a", protocol="iscsi", os_type="vmware", svm={"name": sim.svm}, initiators=[{"name": IQN_A}]
    )
    group_a.post()
    Igroup(
        name="host_b", protocol="iscsi", os_type="vmware", svm={"name": sim.svm}, initiators=[{"name": IQN_B}]
    ).post()
    LunMap(igroup={"name": "host_a"}, lun={"name": lun.name}, svm={"name": sim.svm}).post()
    return vol, lun, group_a


def test_a_map_is_served_to_its_igroup_only(ontap: OntapSim, conn: HostConnection) -> None:
    with conn:
        _, lun, group_a = _setup(ontap, "lb_plane")
        target = ontap.target("host_a")
        assert iscsi.visible_luns(ontap.portal, IQN_A).get(target) == [1]
        assert target not in iscsi.visible_luns(ontap.portal, IQN_B)
        assert iscsi.login_refused(ontap.portal, IQN_B, target, 1)
        seen = iscsi.identity(ontap.portal, IQN_A, target, 1)
        assert seen.naa == "naa.600a0980" + lun.serial_number.encode("ascii").hex()
        assert seen.serial == lun.serial_number
        assert iscsi.capacity(ontap.portal, IQN_A, target, 1) == 64 * MIB

        grown: Any = Lun(uuid=lun.uuid)  # netapp-ontap declares no attribute types
        grown.space = {"size": 96 * MIB}
        grown.patch()
        assert iscsi.capacity(ontap.portal, IQN_A, target, 1) == 96 * MIB

        LunMap(lun={"uuid": lun.uuid}, igroup={"uuid": group_a.uuid}).delete()
        assert iscsi.visible_luns(ontap.portal, IQN_A).get(target) == []


def test_snapshot_restore_and_lun_clone_give_back_the_old_bytes(
    ontap: OntapSim, conn: HostConnection
) -> None:
    with conn:
        vol, lun, group_a = _setup(ontap, "lb_restore", 16 * MIB)
        target = ontap.target("host_a")
        iscsi.write_pattern(ontap.portal, IQN_A, target, 1, 0xAA, 0, 1 << 16)
        Snapshot(vol.uuid, name="before").post(poll=True)
        iscsi.write_pattern(ontap.portal, IQN_A, target, 1, 0x55, 0, 1 << 16)

        clone = Lun(
            name="/vol/lb_restore/copy",
            clone={"source": {"name": "/vol/lb_restore/.snapshot/before/disk"}},
            svm={"name": ontap.svm},
        )
        clone.post(hydrate=True)
        assert clone.serial_number != lun.serial_number
        assert clone.space.size == lun.space.size
        LunMap(igroup={"name": "host_a"}, lun={"name": clone.name}, svm={"name": ontap.svm}).post()
        assert iscsi.has_pattern(ontap.portal, IQN_A, target, 2, 0xAA, 0, 1 << 16)

        LunMap(lun={"uuid": lun.uuid}, igroup={"uuid": group_a.uuid}).delete()  # lunbridge restores unmapped
        status, _ = request(
            ontap,
            "PATCH",
            f"/api/storage/volumes/{vol.uuid}?restore_to.snapshot.name=before&return_timeout=10",
            {},
        )
        assert status == 200
        assert not any(
            x.name == clone.name for x in Lun.get_collection(name="/vol/lb_restore/*")
        )  # made after
        LunMap(igroup={"name": "host_a"}, lun={"name": lun.name}, svm={"name": ontap.svm}).post()
        assert iscsi.has_pattern(ontap.portal, IQN_A, target, 1, 0xAA, 0, 1 << 16)
        restored = Lun(uuid=lun.uuid)
        restored.get(fields="serial_number")
        assert restored.serial_number == lun.serial_number


def test_chap_credentials_bind_accounts_and_hide_passwords(
    ontap: OntapSim, conn: HostConnection, tgt: tgt_module.Tgt
) -> None:
    with conn:
        _setup(ontap, "lb_chap")
    body = {
        "svm": {"name": ontap.svm}, "initiator": IQN_A, "authentication_type": "chap",
        "chap": {"inbound": {"user": "ontapsim-in", "password": "secret-in-1234"}},
    }  # fmt: skip
    assert request(ontap, "POST", "/api/protocols/san/iscsi/credentials", body)[0] == 201
    _, listed = request(ontap, "GET", "/api/protocols/san/iscsi/credentials?fields=*")
    assert listed["records"] == [{**listed["records"][0], "chap": {"inbound": {"user": "ontapsim-in"}}}]
    shown = tgt.adm("--op", "show", "--mode", "target").stdout
    section = shown.split(f": {ontap.target('host_a')}\n", 1)[1].split("\nTarget ", 1)[0]
    assert "Account information:\n        ontapsim-in\n" in section
    refused = subprocess.run(
        ["iscsi-ls", "-s", "-i", IQN_A, f"iscsi://{ontap.portal}/"], capture_output=True, check=False
    )
    assert b"Authentication failure" in refused.stdout + refused.stderr


def test_restarts_keep_the_state_and_put_tgtd_back(
    tmp_path: Path, sim_pool: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    folder = tmp_path / "restart"
    own = tgt_module.start(folder, name="tgtd-ontapsim")
    sim = ontap_lab.start(folder, own, state_dir=sim_pool / "state", job_delay=0.05)
    try:
        conn = connect(sim, monkeypatch)
        with conn:
            _, lun, _ = _setup(sim, "lb_restart")
        target = sim.target("host_a")
        ontap_lab.stop(folder, sim, keep_targets=True)
        own = tgt_module.restart(folder, own, name="tgtd-ontapsim")  # an empty tgtd, as after a crash
        assert tgt_module.target_ids(own) == []
        sim = ontap_lab.start(
            folder,
            own,
            state_dir=sim.state_dir,
            port=sim.port,
            password=sim.password,
            iqn_prefix=sim.iqn_prefix,
        )
        assert iscsi.identity(sim.portal, IQN_A, target, 1).serial == lun.serial_number

        own = tgt_module.restart(folder, own, name="tgtd-ontapsim")  # while the simulator runs
        status, found = request(sim, "GET", f"/api/storage/luns?name={lun.name}&fields=serial_number")
        assert status == 200
        assert found["records"][0]["serial_number"] == lun.serial_number
        assert iscsi.visible_luns(sim.portal, IQN_A).get(target) == [1]
    finally:
        ontap_lab.stop(folder, sim)
        tgt_module.stop(folder, own, name="tgtd-ontapsim")
        assert_no_bug(folder, sim)
