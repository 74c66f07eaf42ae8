"""The operator with two storage backends, the lab's tgtd (`tgt`, the default) and the lab's
ONTAP simulator (`netapp`, whose data plane is the same tgtd under its own IQN prefix), for the
whole chain on ontap: VirtualDisks with `backend: netapp` reach vSphere VMs of the vCenter
simulator as RDMs and the KVM guest through libvirt, found there by their 600a0980 NAAs; and
snapshots, clones, restores and verifications on ontap.

The operator package's fixtures (disks, snapshots, the verifier node) and the CSI controller
package's (the controller service on a loopback port, its stub, volumes deleted after a test)
are used as they are, with this package's operator.
"""

from __future__ import annotations

import json
import uuid
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest

from tests.integration.csi_controller.conftest import (  # noqa: F401 - fixtures used by this package
    channel,
    controller,
    endpoint,
    volumes,
)
from tests.integration.hypervisor.vcenter import forget_portal
from tests.integration.operator.conftest import (  # noqa: F401 - fixtures used by this package
    disks,
    guest_disks,
    snapshots,
    verifier,
)
from tests.lab import operator as operator_lab
from tests.lab import pool
from tests.lab import vcsim as vcsim_lab
from tests.lab.lab import LabState
from tests.lab.ontap import lab as ontap_lab

NAME = "operator-ontap"
BACKEND = "netapp"


@pytest.fixture(scope="package")
def ontap_sim(lab: LabState, tmp_path_factory: pytest.TempPathFactory) -> Iterator[ontap_lab.OntapSim]:
    folder = tmp_path_factory.mktemp("ontap-chain")
    state = pool.mount_point(Path(lab.lab_dir)) / f"ontap-chain-{uuid.uuid4().hex[:8]}"
    state.mkdir()
    sim = ontap_lab.start(folder, lab.tgt, state_dir=state, svm="svm_k8s")
    yield sim
    try:  # every test deleted what it made: nothing of lunbridge's is left on the SVM
        left = {
            "FlexVols": [r["name"] for r in on_ontap(sim, "/api/storage/volumes?name=k8s_*")],
            "LUNs": [r["name"] for r in on_ontap(sim, "/api/storage/luns?name=/vol/k8s_*/*")],
        }
        assert not any(left.values()), f"left on the SVM: {left}"
    finally:
        ontap_lab.stop(folder, sim)


@pytest.fixture(scope="package")
def operator(
    lab: LabState, ontap_sim: ontap_lab.OntapSim, tmp_path_factory: pytest.TempPathFactory
) -> Iterator[int]:
    """`lunbridge-operator` with a backends file: the lab's tgtd as `tgt` (the default, as the
    lab's environment describes it) and the ONTAP simulator as `netapp`, its credentials in a
    folder as a mounted Secret would put them."""
    folder = tmp_path_factory.mktemp("operator-ontap")
    credentials = folder / "netapp-credentials"
    credentials.mkdir()
    (credentials / "username").write_text(ontap_sim.username + "\n")
    (credentials / "password").write_text(ontap_sim.password + "\n")
    env = lab.env()
    backends: list[dict[str, Any]] = [
        {"name": "tgt", "type": "tgt", "default": True, "settings": {
            "portal": env["LUNBRIDGE_TGT_PORTAL"], "controlPort": int(env["LUNBRIDGE_TGT_CONTROL_PORT"]),
            "poolDir": env["LUNBRIDGE_TGT_POOL_DIR"], "stateFile": env["LUNBRIDGE_TGT_STATE_FILE"],
            "nodePortals": [env["LUNBRIDGE_TGT_NODE_PORTALS"]]}},
        {"name": BACKEND, "type": "ontap", "credentialsDir": str(credentials), "settings": {
            "managementUrl": ontap_sim.url, "svm": ontap_sim.svm, "caFile": str(ontap_sim.ca_file),
            "dataInterfaces": [ontap_sim.portal], "flexvolPrefix": "k8s_"}},
    ]  # fmt: skip
    backends_file = folder / "backends.json"
    backends_file.write_text(json.dumps({"backends": backends}))
    cleared = {key: "" for key in env if key.startswith("LUNBRIDGE_TGT_")}
    pid = operator_lab.start(
        lab, name=NAME, extra_env={**cleared, "LUNBRIDGE_BACKENDS_FILE": str(backends_file)}
    )
    yield pid
    operator_lab.stop(lab, name=NAME)


@pytest.fixture(scope="package", autouse=True)
def _hosts_left_as_found(lab: LabState, si: Any, vcsim: vcsim_lab.VcsimPeer) -> Iterator[None]:
    yield
    forget_portal(si, vcsim.inventory, lab.tgt.port)


def on_ontap(sim: ontap_lab.OntapSim, path: str) -> list[dict[str, Any]]:
    """The records of an ONTAP collection, asked of the simulator over its REST API."""
    status, answer = ontap_lab.request(sim, "GET", path)
    assert status == 200, answer
    records: list[dict[str, Any]] = answer["records"]
    return records
