"""Issue 12, case 10: orphans found, on the lab. A Ready disk is deleted the hard way (the
operator stopped, its finalizer removed, the object deleted), so its LUN and map stay on tgtd
and its RDM on the simulator's VM. Started again, the operator reports them (an Event per kind
on the VirtualDisk CRD); `lunbridge-operator sweep` lists the three and exits 1; `--remove`
refuses while the operator is alive in the peering, and with `--force` removes them from tgtd
and from the VM."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path
from typing import Any

import pytest

from tests.integration.operator import observe
from tests.integration.operator.conftest import Disks, LabVm
from tests.lab import operator as operator_lab
from tests.lab.lab import LabState, kubectl

pytestmark = pytest.mark.usefixtures("operator")

CRD = "virtualdisks.lunbridge.io"


def sweep(lab: LabState, *args: str) -> subprocess.CompletedProcess[str]:
    """`python -m lunbridge_operator sweep ARGS` with the lab's environment (as `.lab/env`)."""
    env = {**os.environ, **lab.env()}
    env["PATH"] = f"{Path(sys.executable).parent}:{os.environ.get('PATH', '')}"
    return subprocess.run(
        [sys.executable, "-m", "lunbridge_operator", "sweep", *args],
        env=env,
        capture_output=True,
        text=True,
        timeout=180,
        check=False,
    )


def rows(result: subprocess.CompletedProcess[str], lun: str) -> list[tuple[str, str, str, str]]:
    """The orphan lines about LUN `lun`: (kind, place, name, NAA)."""
    found = []
    for line in result.stdout.splitlines():
        columns = line.split("\t")
        if len(columns) == 5 and columns[2].split(" ")[0] == lun:
            found.append((columns[0], columns[1], columns[2], columns[3]))
    return sorted(found)


def crd_events(lab: LabState) -> dict[str, dict[str, Any]]:
    """The Events about the VirtualDisk CRD, by name."""
    selector = f"involvedObject.kind=CustomResourceDefinition,involvedObject.name={CRD}"
    found = observe.items(lab, "events", "-A", f"--field-selector={selector}")
    return {e["metadata"]["name"]: e for e in found}


@pytest.mark.timeout(300)
def test_a_disk_deleted_the_hard_way_leaves_orphans_that_are_reported_listed_and_removed(
    lab: LabState, si: Any, disks: Disks, lab_vms: list[LabVm]
) -> None:
    vm = lab_vms[0]
    name = disks.make(vm.node)
    disk = observe.wait_ready(lab, name)
    lun, igroup = disk["status"]["lun"], disk["status"]["initiatorGroup"]
    naa: str = lun["naa"]

    # the hard way: with no operator running, the finalizer goes and so does the object
    operator_lab.stop(lab)
    patch = json.dumps({"metadata": {"finalizers": None}})
    patched = kubectl(lab, "patch", "vdisk", name, "--type=merge", "-p", patch)
    assert patched.returncode == 0, patched.stderr
    deleted = kubectl(lab, "delete", "vdisk", name, "--wait=false")
    assert deleted.returncode == 0, deleted.stderr
    observe.wait_gone(lab, "vdisk", name, timeout=30)
    before = set(crd_events(lab))
    operator_lab.start(lab)  # the module's operator again: it sweeps on start

    assert lun["name"] in observe.backend_state(lab)["luns"]
    assert [r for r in observe.rdms(si, vm.name) if r.device.endswith(naa)]

    # the operator's report: one Warning per kind, on the CRD
    def reported() -> dict[str, dict[str, Any]] | None:
        new = {e["reason"]: e for n, e in crd_events(lab).items() if n not in before}
        return new if {"OrphanLuns", "OrphanMaps", "OrphanRdms"} <= set(new) else None

    events = observe.eventually(reported, 90, "the operator's orphan Events on the CRD")
    assert all(events[r]["type"] == "Warning" for r in ("OrphanLuns", "OrphanMaps", "OrphanRdms"))
    assert f"vm/{vm.name}: {lun['name']}" in events["OrphanRdms"]["message"]

    # the command lists exactly the LUN, its map and its RDM, and says so by its exit code
    listed = sweep(lab)
    assert listed.returncode == 1, listed.stderr
    assert rows(listed, lun["name"]) == [
        ("lun", "backend/tgt", lun["name"], naa),
        ("map", "backend/tgt", f"{lun['name']} -> {igroup}", naa),
        ("rdm", f"vm/{vm.name}", lun["name"], naa),
    ]
    assert lab.vsphere_password not in listed.stdout + listed.stderr

    # --remove refuses while the operator is alive in the ClusterKopfPeering
    refused = sweep(lab, "--remove")
    assert refused.returncode == 3, refused.stdout + refused.stderr
    assert "--remove refused" in refused.stderr
    assert lun["name"] in observe.backend_state(lab)["luns"]

    removed = sweep(lab, "--remove", "--force")
    assert removed.returncode in (0, 1), removed.stdout + removed.stderr
    steps = removed.stdout
    assert f"detached {naa} (LUN {lun['name']}) from VM {vm.name}" in steps
    assert f"unmapped LUN {lun['name']} from igroup {igroup} on backend tgt" in steps
    assert f"deleted LUN {lun['name']} ({naa}) on backend tgt (its snapshots stay)" in steps

    state = observe.backend_state(lab)
    assert lun["name"] not in state["luns"]
    assert [m for m in state["maps"] if m["lun"] == lun["name"]] == []
    assert naa not in observe.served(lab.tgt)
    assert f"{lun['name']}.img" not in observe.pool_files(lab)
    assert [r for r in observe.rdms(si, vm.name) if r.device.endswith(naa)] == []

    again = sweep(lab)
    assert rows(again, lun["name"]) == []
    assert again.returncode == (1 if again.stdout.strip() else 0), again.stderr
