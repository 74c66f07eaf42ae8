"""An upgrade as a user does it, on the lab: the previous release's operator (taken from git,
with its own CRDs) makes attached disks; it is stopped; the current CRDs are applied and the
current operator starts, configured with a backends file whose default backend has another
name than the `tgt` the old status records. Every disk must reconcile unchanged (the same LUN,
map and RDM, nothing re-created), its status takes the new shape (attachment mode, no legacy
keys, the default backend's name), and deleting it leaves nothing behind."""

from __future__ import annotations

import functools
import json
import subprocess
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest

from lunbridge.models import AttachMode, VirtualDiskStatus
from tests.integration.operator import expect, observe
from tests.integration.operator.conftest import Disks, LabVm
from tests.lab import operator as operator_lab
from tests.lab.lab import LabState, apply_crds, kubectl
from tests.lab.paths import REPO_DIR

# the last commit before typed status, attachment modes and named backends
PREVIOUS_RELEASE = "4b59d6a94c13b7b74b601b65043227481a4eae33"
LEGACY_KEYS = {"controllerKey", "busNumber", "unitNumber", "diskKey"}


@pytest.fixture(scope="module")
def previous_release(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """The previous release's operator and CRDs, exported from this repository's history."""
    folder = tmp_path_factory.mktemp("previous-release")
    archive = subprocess.run(
        ["git", "-C", str(REPO_DIR), "archive", PREVIOUS_RELEASE, "lunbridge", "operator", "crds"],
        capture_output=True,
        check=False,
    )
    assert archive.returncode == 0, f"git archive {PREVIOUS_RELEASE}: {archive.stderr.decode()}"
    subprocess.run(["tar", "-x", "-C", str(folder)], input=archive.stdout, check=True)
    return folder


def backends_file(lab: LabState, folder: Path) -> Path:
    """The lab's tgtd as the one, default backend `san-a` (what `tgt` meant before)."""
    env = lab.env()
    settings = {
        "portal": env["LUNBRIDGE_TGT_PORTAL"],
        "controlPort": int(env["LUNBRIDGE_TGT_CONTROL_PORT"]),
        "poolDir": env["LUNBRIDGE_TGT_POOL_DIR"],
        "stateFile": env["LUNBRIDGE_TGT_STATE_FILE"],
    }
    path = folder / "backends.json"
    path.write_text(json.dumps({"backends": [{"name": "san-a", "type": "tgt", "default": True,
                                              "settings": settings}]}))  # fmt: skip
    return path


@pytest.fixture
def lab_restored(lab: LabState) -> Iterator[None]:
    yield
    for name in ("operator-previous", "operator-current"):
        operator_lab.stop(lab, name)
    apply_crds(lab)


@pytest.mark.usefixtures("lab_restored")
@pytest.mark.timeout(600)
def test_disks_made_by_the_previous_release_reconcile_unchanged_after_the_upgrade(
    lab: LabState, si: Any, lab_vms: list[LabVm], disks: Disks, previous_release: Path, tmp_path: Path
) -> None:
    old_crds = sorted((previous_release / "crds").glob("*.yaml"))
    applied = kubectl(
        lab, "apply", "--server-side", "--force-conflicts", *[f"--filename={p}" for p in old_crds]
    )
    assert applied.returncode == 0, applied.stderr
    old_code = f"{previous_release}:{previous_release / 'operator'}"
    # PYTHONSAFEPATH: the working folder (this checkout) must not shadow the old code
    operator_lab.start(lab, "operator-previous", extra_env={"PYTHONPATH": old_code, "PYTHONSAFEPATH": "1"})
    attached, spare = lab_vms[0], disks.make(size="32Mi")
    names = [disks.make(attached.node, size="32Mi"), spare]
    before = {name: observe.wait_ready(lab, name, timeout=120) for name in names}
    made_by_old = before[names[0]]["status"]["attachment"]
    assert set(made_by_old) >= LEGACY_KEYS, f"the previous release wrote {made_by_old}"
    assert before[names[0]]["status"]["lun"]["backend"] == "tgt"
    luns_before = set(observe.backend_state(lab)["luns"])
    operator_lab.stop(lab, "operator-previous")

    apply_crds(lab)
    current = {
        "LUNBRIDGE_BACKENDS_FILE": str(backends_file(lab, tmp_path)),
        "LUNBRIDGE_TGT_PORTAL": "",
        "LUNBRIDGE_TGT_NODE_PORTALS": "",
        "LUNBRIDGE_TGT_CONTROL_PORT": "",
        "LUNBRIDGE_TGT_POOL_DIR": "",
        "LUNBRIDGE_TGT_STATE_FILE": "",
    }
    operator_lab.start(lab, "operator-current", extra_env=current)

    def upgraded(name: str) -> dict[str, Any] | None:
        """Reconciled through by the current operator: the new backend name, and for an attached
        disk the attach step's record (the steps before it write status too)."""
        disk = observe.get(lab, "vdisk", name)
        status = (disk or {}).get("status") or {}
        lun, attachment = status.get("lun") or {}, status.get("attachment")
        attached = attachment is None or set(attachment.get("detail") or {}) >= LEGACY_KEYS
        return disk if lun.get("backend") == "san-a" and attached and observe.is_ready(disk) else None

    after = {
        name: observe.eventually(functools.partial(upgraded, name), 90, f"{name} upgraded") for name in names
    }
    for name in names:
        old, new = before[name]["status"], VirtualDiskStatus.from_dict(after[name]["status"])
        assert new.lun is not None
        assert (new.lun.name, new.lun.naa, new.lun.id) == (
            old["lun"]["name"],
            old["lun"]["naa"],
            old["lun"].get("id"),
        )
        assert after[name]["metadata"]["generation"] == before[name]["metadata"]["generation"]
    status = VirtualDiskStatus.from_dict(after[names[0]]["status"])
    assert status.attachment is not None
    assert status.attachment.mode is AttachMode.HYPERVISOR
    assert not LEGACY_KEYS & set(after[names[0]]["status"]["attachment"]), "the legacy keys were not removed"
    assert (status.attachment.pci_slot, status.attachment.guest_address) == (
        made_by_old.get("pciSlot"), made_by_old["guestAddress"])  # fmt: skip
    assert {k: status.attachment.detail[k] for k in LEGACY_KEYS} == {k: made_by_old[k] for k in LEGACY_KEYS}
    assert set(observe.backend_state(lab)["luns"]) == luns_before, "a LUN was made or lost by the upgrade"
    expect.exactly_one(lab, si, after[names[0]], [vm.name for vm in lab_vms])

    disks.delete_all()
    hosts = sorted({vm.host.name for vm in lab_vms})
    luns = [before[name]["status"]["lun"] for name in names]
    expect.nothing_left(lab, si, luns, [vm.name for vm in lab_vms], hosts)
