"""Fifty VirtualDisks in one `kubectl apply` over five VMs (on all four hosts: the cluster's
three and the standalone one): all Ready, every one at its own (VM, controller, unit) as vcsim shows, and
all gone after one delete. Prints how long both took.

And an operator started while more disks wait than it reconciles at once (`--disk-slots`) makes
them all Ready, and deletes them all when they were deleted while it was down: kopf holds a
worker per object until its indices have seen every object listed at start, so an operator
bounded by kopf's worker limit instead never handled anything. That operator also has a single
API server connection for its requests."""

from __future__ import annotations

import time
from typing import Any

import pytest

from lunbridge.models import VirtualDiskStatus
from tests.integration.operator import expect, observe
from tests.integration.operator.conftest import Disks, LabVm
from tests.integration.operator.snapshotting import TEST_LABEL
from tests.lab import operator as operator_lab
from tests.lab import vcsim as vcsim_lab
from tests.lab.lab import LabState, kubectl

pytestmark = pytest.mark.usefixtures("operator")

DISKS, VMS = 50, 5
WAITING, SLOTS = 9, 2  # disks applied while the operator is down; its slots when it starts


def test_fifty_disks_at_once_over_five_vms_get_distinct_units_and_all_go(
    lab: LabState, si: Any, vcsim: vcsim_lab.VcsimPeer, lab_vms: list[LabVm], disks: Disks
) -> None:
    first_per_host = list({vm.host.name: vm for vm in reversed(lab_vms)}.values())
    vms = [*first_per_host, next(vm for vm in lab_vms if vm not in first_per_host)][:VMS]
    assert len(vms) == VMS
    assert len({vm.host.name for vm in vms}) == len(vcsim.inventory.hosts) == 4
    assert all(observe.rdms(si, vm.name) == [] for vm in vms)
    manifests = [disks.manifest(vms[i % VMS].node) for i in range(DISKS)]
    selector = f"{TEST_LABEL}={disks.test_id}"

    started = time.monotonic()
    observe.apply(lab, *manifests)

    def all_ready() -> list[dict[str, Any]] | None:
        found = disks.mine()
        return found if len(found) == DISKS and all(observe.is_ready(d) for d in found) else None

    ready = observe.eventually(all_ready, 300, f"{DISKS} VirtualDisks Ready", every=1)
    took = time.monotonic() - started

    attachments = [VirtualDiskStatus.from_dict(d["status"]).attachment for d in ready]
    places = [(a.vm, a.detail["controllerKey"], a.detail["unitNumber"]) for a in attachments if a is not None]
    assert len(set(places)) == DISKS, "two disks share a SCSI unit"
    in_vcsim = [r for vm in vms for r in observe.rdms(si, vm.name)]
    assert len(in_vcsim) == DISKS
    assert {(r.vm, r.controller_key, r.unit) for r in in_vcsim} == set(places)
    naas = {d["status"]["lun"]["naa"] for d in ready}
    assert {r.device.rsplit("/", 1)[1] for r in in_vcsim} == naas
    assert len(naas) == DISKS
    assert naas <= observe.served(lab.tgt)
    print(f"{DISKS} disks over {VMS} VMs Ready in {took:.1f}s ({DISKS / took:.1f} disks/s)")

    started = time.monotonic()
    deleted = kubectl(lab, "delete", "vdisk", "-l", selector, "--timeout=300s")
    took = time.monotonic() - started
    assert deleted.returncode == 0, deleted.stderr
    assert disks.mine() == []
    hosts = [h.name for h in vcsim.inventory.hosts]
    expect.nothing_left(lab, si, [d["status"]["lun"] for d in ready], [vm.name for vm in vms], hosts)
    print(f"{DISKS} disks deleted in {took:.1f}s")


def test_an_operator_started_with_more_waiting_disks_than_slots_makes_and_deletes_them_all(
    lab: LabState, si: Any, vcsim: vcsim_lab.VcsimPeer, lab_vms: list[LabVm], disks: Disks
) -> None:
    vms = list({vm.host.name: vm for vm in lab_vms}.values())[:2]
    manifests = [disks.manifest(vms[i % 2].node) for i in range(WAITING - 3)]
    manifests += [disks.manifest() for _ in range(3)]  # unattached ones wait too
    # and one connection for requests: a pool that tight starves neither the watches nor the steps
    slots = {"LUNBRIDGE_DISK_SLOTS": str(SLOTS), "LUNBRIDGE_API_CONNECTIONS": "1"}

    def all_ready() -> list[dict[str, Any]] | None:
        found = disks.mine()
        return found if len(found) == WAITING and all(observe.is_ready(d) for d in found) else None

    operator_lab.stop(lab)
    try:
        observe.apply(lab, *manifests)
        assert all("status" not in d for d in disks.mine())  # nobody worked on them yet
        started = time.monotonic()
        operator_lab.start(lab, extra_env=slots)
        ready = observe.eventually(all_ready, 180, f"{WAITING} waiting VirtualDisks Ready", every=1)
        print(f"{WAITING} waiting disks Ready {time.monotonic() - started:.1f}s after a start, {SLOTS} slots")
        for disk in ready:
            if disk["spec"].get("nodeName"):
                expect.exactly_one(lab, si, disk, [vm.name for vm in vms])
            else:
                assert disk["status"].get("attachment") is None

        # the same with teardowns: deleted while the operator is down, all go once it starts
        operator_lab.stop(lab)
        deleted = kubectl(lab, "delete", "vdisk", "-l", f"{TEST_LABEL}={disks.test_id}", "--wait=false")
        assert deleted.returncode == 0, deleted.stderr
        started = time.monotonic()
        operator_lab.start(lab, extra_env=slots)
        observe.eventually(lambda: not disks.mine(), 180, f"{WAITING} deleted VirtualDisks gone", every=1)
        print(f"{WAITING} deleted disks gone {time.monotonic() - started:.1f}s after a start, {SLOTS} slots")
    finally:
        operator_lab.stop(lab)
        operator_lab.start(lab)
    hosts = [h.name for h in vcsim.inventory.hosts]
    expect.nothing_left(lab, si, [d["status"]["lun"] for d in ready], [vm.name for vm in vms], hosts)
