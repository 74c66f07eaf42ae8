"""A VirtualDisk through the running operator, checked on every peer as a user would: the LUN
in tgtd with the NAA of status, masked to exactly the initiators vcsim reports for the VM's
host (or cluster), the RDM in vcsim where status says; nothing left after deletion (the LUN
alone with Retain); a changed nodeName moves the disk; a Node that is missing or has no
providerID is reported, and the disk becomes Ready once the Node is right."""

from __future__ import annotations

import json
import time
from typing import Any

import pytest

from tests.integration.operator import expect, observe
from tests.integration.operator.conftest import Disks, LabVm, new_name
from tests.integration.storage import iscsi
from tests.lab import vcsim as vcsim_lab
from tests.lab.lab import LabState, kubectl

pytestmark = pytest.mark.usefixtures("operator")

STEP_EVENTS = {"Provisioned", "Mapped", "Attached"}


def pick(lab_vms: list[LabVm], clustered: bool, index: int = 0) -> LabVm:
    return [vm for vm in lab_vms if (vm.host.cluster is not None) is clustered][index]


def cluster_hosts(vcsim: vcsim_lab.VcsimPeer, host: vcsim_lab.Host) -> list[vcsim_lab.Host]:
    if host.cluster is None:
        return [host]
    return [h for h in vcsim.inventory.hosts if h.cluster == host.cluster]


@pytest.mark.parametrize(
    ("scope", "clustered", "igroup_kind"),
    [("host", True, "host"), (None, True, "cluster"), (None, False, "host")],
    ids=["scope-host-on-a-clustered-host", "default-scope-on-a-clustered-host", "standalone-host"],
)
def test_apply_gets_a_lun_masked_to_the_hosts_initiators_and_attached_as_an_rdm(
    lab: LabState,
    si: Any,
    vcsim: vcsim_lab.VcsimPeer,
    lab_vms: list[LabVm],
    disks: Disks,
    scope: str | None,
    clustered: bool,
    igroup_kind: str,
) -> None:
    vm = pick(lab_vms, clustered)
    started = time.monotonic()
    name = disks.make(vm.node, **({"scope": scope} if scope else {}))
    disk = observe.wait_ready(lab, name)
    took = time.monotonic() - started

    status = disk["status"]
    assert status["phase"] == "Ready"
    assert status["initiatorGroup"].startswith(f"{igroup_kind}-")
    assert status["attachment"]["vm"] == vm.name
    assert status["attachment"]["host"] == vm.host.name
    expect.exactly_one(lab, si, disk, [v.name for v in lab_vms])

    # the igroup's target lets in exactly the IQNs vcsim reports for the host (or its cluster)
    hosts = [vm.host] if scope == "host" else cluster_hosts(vcsim, vm.host)
    target = observe.targets(lab.tgt)[observe.TARGET_PREFIX + status["initiatorGroup"]]
    assert target.acl == {h.iqn for h in hosts}
    # ... as an initiator sees it: the host reads the NAA of status; a host outside is refused
    lun = status["lun"]
    assert iscsi.identity(lab.tgt.portal, vm.host.iqn, target.name, lun["id"]).naa == lun["naa"]
    outsider = next(h for h in vcsim.inventory.hosts if h not in hosts)
    assert iscsi.login_refused(lab.tgt.portal, outsider.iqn, target.name, lun["id"])
    # every host of the igroup was rescanned and lists the LUN
    assert all(lun["naa"] in observe.host_luns(si, h.name) for h in hosts)

    observe.wait_events(lab, disk, STEP_EVENTS)
    assert observe.warnings(lab, disk) == []
    # lunbridge's own steps only: kopf's progress lines stay in the operator's log
    assert {e["reason"] for e in observe.events(lab, disk)} == STEP_EVENTS
    print(f"apply -> Ready in {took:.2f}s")


@pytest.mark.parametrize("policy", ["Delete", "Retain"])
def test_delete_leaves_nothing_and_retain_only_the_lun(
    lab: LabState,
    si: Any,
    vcsim: vcsim_lab.VcsimPeer,
    lab_vms: list[LabVm],
    disks: Disks,
    policy: str,
) -> None:
    vm = pick(lab_vms, clustered=True, index=1)
    name = disks.make(vm.node, reclaimPolicy=policy)
    disk = observe.wait_ready(lab, name)
    lun = disk["status"]["lun"]

    started = time.monotonic()
    deleted = kubectl(lab, "delete", "vdisk", name, "--timeout=60s")
    took = time.monotonic() - started
    assert deleted.returncode == 0, deleted.stderr
    assert observe.get(lab, "vdisk", name) is None  # the finalizer is gone with the object

    all_hosts = [h.name for h in vcsim.inventory.hosts]
    retained = policy == "Retain"
    expect.nothing_left(lab, si, [lun], [v.name for v in lab_vms], all_hosts, retained=retained)
    observe.wait_events(lab, disk, {"Retained" if retained else "Deleted"})
    if retained:  # the LUN is the user's now; this test gives it back
        observe.delete_lun(lab, lun["name"])
        expect.nothing_left(lab, si, [lun], [v.name for v in lab_vms], all_hosts)
    print(f"delete took {took:.2f}s")


def test_changed_node_name_moves_the_disk_to_the_new_vm(
    lab: LabState, si: Any, vcsim: vcsim_lab.VcsimPeer, lab_vms: list[LabVm], disks: Disks
) -> None:
    old, new = pick(lab_vms, clustered=True, index=2), pick(lab_vms, clustered=False, index=0)
    name = disks.make(old.node)
    before = observe.wait_ready(lab, name)["status"]
    naa, old_igroup = before["lun"]["naa"], before["initiatorGroup"]

    started = time.monotonic()
    patch = json.dumps({"spec": {"nodeName": new.node}})
    assert kubectl(lab, "patch", "vdisk", name, "--type=merge", "-p", patch).returncode == 0
    after_disk = observe.wait_ready(lab, name)
    took = time.monotonic() - started
    after = after_disk["status"]

    assert after["attachment"]["node"] == new.node
    assert after["attachment"]["vm"] == new.name
    assert after["lun"]["naa"] == naa  # the same LUN, now elsewhere
    assert after["initiatorGroup"] != old_igroup
    assert [r for r in observe.rdms(si, old.name) if r.device.endswith(naa)] == []
    expect.exactly_one(lab, si, after_disk, [v.name for v in lab_vms])
    served_by = [target for target, _ in observe.lus_with(lab.tgt, naa)]
    assert served_by == [observe.TARGET_PREFIX + after["initiatorGroup"]]  # no LU left on the old target
    assert observe.targets(lab.tgt)[served_by[0]].acl == {new.host.iqn}
    old_hosts = cluster_hosts(vcsim, old.host)
    assert [h.name for h in old_hosts if naa in observe.host_luns(si, h.name)] == []
    observe.wait_events(lab, after_disk, {"Detached", "Unmapped", "Attached"})
    print(f"move took {took:.2f}s")


@pytest.mark.parametrize("problem", ["no-provider-id", "missing-node"])
def test_a_node_that_cannot_be_found_is_reported_until_it_is_fixed(
    lab: LabState,
    si: Any,
    vcsim: vcsim_lab.VcsimPeer,
    lab_vms: list[LabVm],
    scratch_vm: Any,
    nodes: list[str],
    disks: Disks,
    problem: str,
) -> None:
    host = vcsim.inventory.hosts[-1]
    spare = scratch_vm(host.name)  # a VM no lab Node points at
    node = new_name("node")
    nodes.append(node)
    if problem == "no-provider-id":
        observe.apply(lab, {"apiVersion": "v1", "kind": "Node", "metadata": {"name": node}})
        why = f"Node {node} has no spec.providerID"
    else:
        why = f"Node {node} does not exist"
    name = disks.make(node)

    def failed() -> dict[str, Any] | None:
        obj = observe.get(lab, "vdisk", name)
        ready = observe.condition(obj or {}, "Ready")
        return obj if ready.get("status") == "False" and why in ready.get("message", "") else None

    disk = observe.eventually(failed, 30, f"Ready=False saying '{why}'")
    assert why in disk["status"]["message"]
    warned = observe.eventually(lambda: observe.warnings(lab, disk), 10, "a Warning Event")
    assert any(why in w for w in warned), warned

    started = time.monotonic()
    fixed = {"apiVersion": "v1", "kind": "Node", "metadata": {"name": node},
             "spec": {"providerID": f"vsphere://{observe.bios_uuid(si, spare)}"}}  # fmt: skip
    observe.apply(lab, fixed)
    ready = observe.wait_ready(lab, name, timeout=90)
    took = time.monotonic() - started
    assert ready["status"]["attachment"]["vm"] == spare
    assert ready["status"]["message"] == ""
    expect.exactly_one(lab, si, ready, [spare, *(v.name for v in lab_vms)])
    print(f"Ready {took:.1f}s after the Node was fixed")
