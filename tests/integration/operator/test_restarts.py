"""Peers restarted mid-flight (issue 12, case 11): while 20 VirtualDisks are being created and
20 others deleted, one peer goes away and comes back on the same address: tgtd killed
(SIGKILL, it comes back empty), the vCenter simulator stopped and started (it keeps its
inventory and RDMs, as vCenter does; every session is gone), kube-apiserver stopped and
started over the same etcd. Everything converges within a bounded time: the 20 are Ready,
each held exactly once (one LUN, one map, one LU, one RDM where status says), the 20 are gone
without a trace, and nothing else is left (no extra LUN, pool file, LU or RDM). Across the
tgtd restart, a file written and synced in the KVM guest to a disk staged there reads back
intact (QEMU's iSCSI initiator logs in again once the backend has put the target back).

Each test prints how long the convergence took after the restart."""

from __future__ import annotations

import collections
import time
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from typing import Any

import pytest

from tests.integration.hypervisor.vcenter import send_targets, vim
from tests.integration.operator import expect, observe
from tests.integration.operator.conftest import Disks, LabVm
from tests.integration.operator.guestdisk import Staged, digest_or_none, stage_in_guest, unstage
from tests.lab import libvirt as libvirt_lab
from tests.lab import vcsim as vcsim_lab
from tests.lab.lab import LabState, kubectl, restart_apiserver, restart_tgtd, restart_vcsim

pytestmark = pytest.mark.usefixtures("operator")

COUNT = 20  # disks made and disks deleted while the peer restarts
CONVERGE = 300.0  # seconds, after the restart
DOWN_FOR = 2.0  # how long tgtd and kube-apiserver stay away


def spread(lab_vms: list[LabVm]) -> list[LabVm]:
    """One VM per host (the second of each: other tests use the first), so all four hosts
    and both scopes (cluster, standalone host) take part."""
    per_host: dict[str, LabVm] = {}
    for vm in lab_vms:
        if vm.name.endswith("_VM1"):
            per_host.setdefault(vm.host.name, vm)
    return list(per_host.values())


@dataclass
class Churn:
    """20 disks made just before (to be deleted) and 20 new ones, on the same few VMs."""

    lab: LabState
    disks: Disks
    vms: list[LabVm]
    old: list[dict[str, Any]]
    new_names: list[str]
    lun_names_before: set[str]

    def names(self) -> dict[str, dict[str, Any]]:
        return {d["metadata"]["name"]: d for d in self.disks.mine()}

    def progress(self) -> tuple[int, int]:
        """(new disks Ready, old disks gone)."""
        found = self.names()
        ready = sum(1 for n in self.new_names if observe.is_ready(found.get(n)))
        gone = sum(1 for d in self.old if d["metadata"]["name"] not in found)
        return ready, gone

    def converged(self) -> list[dict[str, Any]] | None:
        found = self.names()
        if any(d["metadata"]["name"] in found for d in self.old):
            return None
        ready = [found[n] for n in self.new_names if observe.is_ready(found.get(n))]
        return ready if len(ready) == COUNT else None


def start_churn(lab: LabState, disks: Disks, vms: list[LabVm]) -> Churn:
    """Make COUNT disks and wait until they are Ready; then apply COUNT new ones and delete the
    first COUNT in one go, and return as soon as the operator works on them (in flight)."""
    lun_names_before = set(observe.backend_state(lab)["luns"])
    old_names = [disks.make(vms[i % len(vms)].node) for i in range(COUNT)]

    def old_ready() -> list[dict[str, Any]] | None:
        found = {d["metadata"]["name"]: d for d in disks.mine()}
        ready = [found[n] for n in old_names if observe.is_ready(found.get(n))]
        return ready if len(ready) == COUNT else None

    old = observe.eventually(old_ready, CONVERGE, f"the first {COUNT} disks Ready", every=2)
    manifests = [disks.manifest(vms[i % len(vms)].node) for i in range(COUNT)]
    churn = Churn(lab, disks, vms, old, [m["metadata"]["name"] for m in manifests], lun_names_before)
    observe.apply(lab, *manifests)
    deleted = kubectl(lab, "delete", "vdisk", "--wait=false", *old_names)
    assert deleted.returncode == 0, deleted.stderr

    def in_flight() -> bool:
        found = churn.names()
        started = any((found.get(n) or {}).get("status", {}).get("phase") for n in churn.new_names)
        deleting = any(
            found.get(n, {}).get("status", {}).get("phase") == "Deleting" or n not in found for n in old_names
        )
        return started or deleting

    observe.eventually(in_flight, 60, "the operator working on the new and the deleted disks", every=0.2)
    return churn


def converge_and_check(churn: Churn, si: Any, lab_vms: list[LabVm], hosts: list[str], what: str) -> float:
    """Wait until the churn converged after `what`; check every peer; the seconds it took."""
    restarted = time.monotonic()
    ready = observe.eventually(
        churn.converged, CONVERGE, f"{COUNT} new disks Ready and {COUNT} old gone after {what}", every=2
    )
    took = time.monotonic() - restarted
    lab = churn.lab
    vm_names = [vm.name for vm in churn.vms]
    for disk in ready:
        expect.exactly_one(lab, si, disk, vm_names)
    old_luns = [d["status"]["lun"] for d in churn.old]
    expect.nothing_left(lab, si, old_luns, vm_names, hosts)

    # nothing orphaned, nothing doubled: exactly the new LUNs more than before, in every peer
    new_luns = {d["status"]["lun"]["name"]: d["status"]["lun"]["naa"] for d in ready}
    state = observe.backend_state(lab)
    assert set(state["luns"]) - churn.lun_names_before == set(new_luns)
    pool = {f.removesuffix(".img") for f in observe.pool_files(lab)}
    assert pool - churn.lun_names_before == set(new_luns)
    known_naas = {f"naa.{rec['naa']}" for rec in state["luns"].values()}
    assert observe.served(lab.tgt) <= known_naas, "tgtd serves LUs the backend does not know"
    rdms = collections.Counter(
        r.device.rsplit("/", 1)[1] for vm in lab_vms for r in observe.rdms(si, vm.name)
    )
    assert {naa: n for naa, n in rdms.items() if n > 1} == {}, "a LUN attached twice"
    on_churn_vms = {r.device.rsplit("/", 1)[1] for vm in churn.vms for r in observe.rdms(si, vm.name)}
    assert on_churn_vms == set(new_luns.values()), "RDMs on the test's VMs that are not its new disks"
    print(f"{what}: {COUNT} Ready and {COUNT} deleted {took:.1f}s after the restart")
    return took


def relogin(si: Any, vcsim: vcsim_lab.VcsimPeer) -> None:
    """Log the suite's shared pyvmomi session in again: a restarted vCenter forgot every session.
    The first calls may fail on the connection the old server closed (pyvmomi then drops it),
    and a cookie of a forgotten session is refused (NotAuthenticated) even for reading
    `currentSession`; done once the session answers as logged in."""
    deadline = time.monotonic() + 30
    last: Exception | None = None
    while True:
        try:
            try:
                current = si.content.sessionManager.currentSession
            except vim.fault.NotAuthenticated:  # the old cookie names no session now
                current = None
            if current is None:
                si.content.sessionManager.Login(vcsim.username, vcsim.password)
            if si.content.sessionManager.currentSession is not None:
                return
        except (OSError, vim.fault.NotAuthenticated) as exc:
            last = exc
        if time.monotonic() > deadline:
            raise AssertionError(f"the suite's vCenter session cannot log in again after the restart: {last}")
        time.sleep(0.5)


@pytest.fixture(autouse=True)
def _session_left_logged_in(si: Any, vcsim: vcsim_lab.VcsimPeer) -> Iterator[None]:
    """Whatever a test here did to vCenter, the later modules find the shared session working."""
    yield
    relogin(si, vcsim)


def identity(vm: vcsim_lab.Vm) -> tuple[str, str, str, str, str]:
    """What makes a VM the same VM to a client (its devices may differ by now)."""
    return vm.name, vm.moref, vm.bios_uuid, vm.instance_uuid, vm.host


@pytest.fixture
def hosts(vcsim: vcsim_lab.VcsimPeer) -> list[str]:
    return [h.name for h in vcsim.inventory.hosts]


@pytest.fixture
def staged_disk(
    lab: LabState, kvm_guest: libvirt_lab.LibvirtGuest, disks: Disks
) -> Iterator[Callable[[], tuple[dict[str, Any], Staged]]]:
    made: list[Staged] = []

    def make() -> tuple[dict[str, Any], Staged]:
        disk = observe.wait_ready(lab, disks.make(node=lab.guest_node, size="32Mi"), timeout=120)
        staged = stage_in_guest(kvm_guest, disk)
        made.append(staged)
        return disk, staged

    yield make
    for staged in made:  # before `disks` detaches it
        unstage(kvm_guest, staged)


# --- the tests ---------------------------------------------------------------------------------
def test_tgtd_killed_mid_flight_everything_converges_and_guest_data_survives(
    lab: LabState,
    si: Any,
    lab_vms: list[LabVm],
    hosts: list[str],
    disks: Disks,
    kvm_guest: libvirt_lab.LibvirtGuest,
    staged_disk: Callable[[], tuple[dict[str, Any], Staged]],
) -> None:
    guest_disk, staged = staged_disk()
    churn = start_churn(lab, disks, spread(lab_vms))
    at = churn.progress()
    began = time.monotonic()
    restart_tgtd(lab, down_for=DOWN_FOR)
    print(f"tgtd killed with {at[0]} new Ready and {at[1]} old gone; back in {time.monotonic() - began:.1f}s")
    converge_and_check(churn, si, lab_vms, hosts, "tgtd restart")

    naa = guest_disk["status"]["lun"]["naa"]
    assert [lu for _, lu in observe.lus_with(lab.tgt, naa)], "the guest's LUN is not served again"
    started = time.monotonic()
    digest = observe.eventually(
        lambda: digest_or_none(kvm_guest, staged.mount), 120, "the guest reading its file back", every=2
    )
    assert digest == staged.digest, "the file written before the tgtd restart changed"
    kvm_guest.run(f"echo after > {staged.mount}/after && sync", timeout=120, check=True)
    print(f"the guest read its file back intact {time.monotonic() - started:.1f}s after convergence")


def test_vcsim_restarted_mid_flight_everything_converges(
    lab: LabState,
    si: Any,
    vcsim: vcsim_lab.VcsimPeer,
    lab_vms: list[LabVm],
    hosts: list[str],
    disks: Disks,
) -> None:
    churn = start_churn(lab, disks, spread(lab_vms))
    at = churn.progress()
    began = time.monotonic()
    inventory = restart_vcsim(lab)
    took = time.monotonic() - began
    print(f"vcsim restarted with {at[0]} new Ready and {at[1]} old gone; back in {took:.1f}s")
    assert [identity(vm) for vm in inventory.vms] == [identity(vm) for vm in vcsim.inventory.vms]
    relogin(si, vcsim)
    converge_and_check(churn, si, lab_vms, hosts, "vcsim restart")


def test_vcsim_keeps_rdms_keys_and_units_across_a_restart(
    lab: LabState, si: Any, vcsim: vcsim_lab.VcsimPeer, lab_vms: list[LabVm], disks: Disks
) -> None:
    """A quiet restart (nothing in flight): every RDM, controller and host send target is
    exactly what it was."""
    vms = spread(lab_vms)[:2]
    names = [disks.make(vms[i % len(vms)].node) for i in range(4)]
    ready = [observe.wait_ready(lab, n, timeout=120) for n in names]
    rdms = {vm.name: sorted(observe.rdms(si, vm.name), key=lambda r: r.key) for vm in vms}
    targets = {h.name: _send_targets(si, h.name) for h in vcsim.inventory.hosts}
    restart_vcsim(lab)
    relogin(si, vcsim)
    assert {vm.name: sorted(observe.rdms(si, vm.name), key=lambda r: r.key) for vm in vms} == rdms
    assert {h.name: _send_targets(si, h.name) for h in vcsim.inventory.hosts} == targets
    for disk in ready:
        fresh = observe.get(lab, "vdisk", disk["metadata"]["name"])
        assert fresh is not None
        expect.exactly_one(lab, si, fresh, [vm.name for vm in lab_vms])


def _send_targets(si: Any, host_name: str) -> list[tuple[str, int]]:
    return sorted(send_targets(si, host_name))


def test_kube_apiserver_restarted_mid_flight_everything_converges(
    lab: LabState, si: Any, lab_vms: list[LabVm], hosts: list[str], disks: Disks
) -> None:
    churn = start_churn(lab, disks, spread(lab_vms))
    at = churn.progress()
    began = time.monotonic()
    restart_apiserver(lab, down_for=DOWN_FOR)
    print(
        f"kube-apiserver restarted with {at[0]} new Ready and {at[1]} old gone; "
        f"back in {time.monotonic() - began:.1f}s"
    )
    converge_and_check(churn, si, lab_vms, hosts, "kube-apiserver restart")
