"""InitiatorGroups through the running operator: one is made for every host (or cluster) that
runs a node, holding the initiators vcsim reports; one a user makes for named hosts becomes
a tgtd target whose ACL is exactly those hosts' IQNs; deleting one that still has LUNs
mapped waits, with a Warning, until the LUNs are gone."""

from __future__ import annotations

import time
from collections.abc import Iterator
from typing import Any

import pytest

from lunbridge.hypervisor.base import Host, Scope
from lunbridge_operator import naming
from tests.integration.operator import observe
from tests.integration.operator.conftest import Disks, LabVm, new_name
from tests.lab import vcsim as vcsim_lab
from tests.lab.lab import LabState, kubectl

pytestmark = pytest.mark.usefixtures("operator")


def rows(hosts: list[vcsim_lab.Host]) -> list[dict[str, str]]:
    """status.initiators as the operator should write them: what vcsim reports, iSCSI only."""
    return sorted(
        ({"host": h.name, "adapter": h.iscsi_device, "protocol": "iscsi", "address": h.iqn} for h in hosts),
        key=lambda row: row["host"],
    )


def in_sync(obj: dict[str, Any] | None) -> dict[str, Any] | None:
    if obj is None or observe.condition(obj, "Ready").get("status") != "True":
        return None
    return obj if obj["status"].get("observedGeneration") == obj["metadata"]["generation"] else None


def wait_in_sync(lab: LabState, name: str) -> dict[str, Any]:
    return observe.eventually(lambda: in_sync(observe.get(lab, "igroup", name)), 60, f"{name} in sync")


def igroup(name: str, hosts: list[str]) -> dict[str, Any]:
    return {"apiVersion": "lunbridge.io/v1alpha1", "kind": "InitiatorGroup",
            "metadata": {"name": name}, "spec": {"hosts": hosts}}  # fmt: skip


@pytest.fixture
def igroups(lab: LabState) -> Iterator[list[str]]:
    """Names of InitiatorGroups a test made; deleted (and waited for) after it."""
    made: list[str] = []
    yield made
    for name in made:
        kubectl(lab, "delete", "igroup", name, "--ignore-not-found", "--wait=false")
    for name in made:
        observe.wait_gone(lab, "igroup", name, timeout=90)


def test_every_host_or_cluster_running_a_node_gets_its_group(
    lab: LabState, vcsim: vcsim_lab.VcsimPeer, lab_vms: list[LabVm]
) -> None:
    by_name: dict[str, list[vcsim_lab.Host]] = {}
    for vm in lab_vms:
        host = vm.host
        scope = Scope.CLUSTER if host.cluster else Scope.HOST
        members = [h for h in vcsim.inventory.hosts if host.cluster and h.cluster == host.cluster] or [host]
        by_name[naming.igroup_name(Host(host.name, host.moref, host.cluster), scope)] = members
    assert sorted(n.split("-")[0] for n in by_name) == ["cluster", "host"]

    for name, hosts in by_name.items():
        obj = wait_in_sync(lab, name)
        status = obj["status"]
        assert obj["metadata"]["labels"]["lunbridge.io/managed-by"] == "lunbridge-operator"
        assert status["storageName"] == name
        assert status["hosts"] == sorted(h.name for h in hosts)
        assert sorted(status["initiators"], key=lambda row: row["host"]) == rows(hosts)
        assert observe.targets(lab.tgt)[observe.TARGET_PREFIX + name].acl == {h.iqn for h in hosts}


def test_a_group_a_user_makes_for_named_hosts_holds_exactly_their_iqns(
    lab: LabState, vcsim: vcsim_lab.VcsimPeer, igroups: list[str]
) -> None:
    clustered = next(h for h in vcsim.inventory.hosts if h.cluster)
    standalone = next(h for h in vcsim.inventory.hosts if not h.cluster)
    name = new_name("ig")
    igroups.append(name)
    observe.apply(lab, igroup(name, [clustered.name, standalone.name]))

    obj = wait_in_sync(lab, name)
    assert obj["status"]["initiators"] == rows([clustered, standalone])
    assert observe.targets(lab.tgt)[observe.TARGET_PREFIX + name].acl == {clustered.iqn, standalone.iqn}
    assert name in observe.backend_state(lab)["igroups"]

    assert kubectl(lab, "delete", "igroup", name, "--timeout=60s").returncode == 0
    assert observe.TARGET_PREFIX + name not in observe.targets(lab.tgt)
    assert name not in observe.backend_state(lab)["igroups"]


def test_deleting_a_group_with_mapped_luns_waits_until_they_are_gone(
    lab: LabState, vcsim: vcsim_lab.VcsimPeer, lab_vms: list[LabVm], igroups: list[str], disks: Disks
) -> None:
    vm = [v for v in lab_vms if v.host.cluster][-1]
    name = naming.igroup_name(Host(vm.host.name, vm.host.moref, vm.host.cluster), Scope.HOST)
    igroups.append(name)
    observe.apply(lab, igroup(name, [vm.host.name]))  # the user's own group for this host
    disk = observe.wait_ready(lab, disks.make(vm.node, scope="host"))
    assert disk["status"]["initiatorGroup"] == name
    naa = disk["status"]["lun"]["naa"]

    kubectl(lab, "delete", "igroup", name, "--wait=false")
    group = observe.get(lab, "igroup", name)
    assert group is not None
    warned = observe.eventually(lambda: observe.warnings(lab, group), 30, "a Warning about the mapped LUNs")
    assert any("still has 1 LUNs mapped" in w for w in warned), warned
    still = observe.get(lab, "igroup", name)
    assert still is not None
    assert still["metadata"].get("deletionTimestamp")
    assert [target for target, _ in observe.lus_with(lab.tgt, naa)] == [observe.TARGET_PREFIX + name]

    assert kubectl(lab, "delete", "vdisk", disk["metadata"]["name"], "--timeout=60s").returncode == 0
    started = time.monotonic()
    observe.wait_gone(lab, "igroup", name, timeout=90)
    print(f"the group went {time.monotonic() - started:.1f}s after its last disk")
    assert observe.TARGET_PREFIX + name not in observe.targets(lab.tgt)
    assert name not in observe.backend_state(lab)["igroups"]
