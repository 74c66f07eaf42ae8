"""The node's publication through its channel, against the real API server, operator and the
node plugin in the KVM guest: started in `initiator` mode with iscsid's IQN, the plugin
publishes its LunbridgeNode and the operator accepts it; a later node publishing the same IQN
is refused it (InitiatorClaimed, the owner named, a warning Event); and with the chart's
admission policy in place, a token bound to a pod on one node cannot publish another node. A
disk on that node is masked to its IQN alone, with no hypervisor call, and NodeStage logs in to
exactly its target, finds the LUN by its NAA and mounts it; tgtd shows the node's session only
while a disk is staged, one session however often it is staged, after a restart of the plugin
too, and a new one after a reboot; a LUN masked to another IQN is refused at login, clearly; a wrong CHAP
secret is refused once (UNAUTHENTICATED, no record left to retry) and mutual CHAP stages."""

from __future__ import annotations

import json
import subprocess
import time
import uuid
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import grpc
import pytest
import yaml

from lunbridge.api import API_VERSION
from lunbridge.models import AttachMode, PublishContext, VirtualDiskStatus
from lunbridge_csi._proto import csi_pb2, csi_pb2_grpc
from tests.integration.chart.rendering import CHART, helm
from tests.integration.libvirt.guestscsi import nexus_initiators
from tests.integration.operator import observe
from tests.lab import csi, iscsi, paths
from tests.lab import libvirt as libvirt_lab
from tests.lab import tgt as tgt_lab
from tests.lab.lab import LabState, kubectl

pytestmark = pytest.mark.usefixtures("operator")
NAMESPACE = "lunbridge-node-test"  # not the chart tests' namespace: they install the whole chart there


@pytest.fixture(scope="module")
def initiator_node(lab: LabState, kvm_guest: libvirt_lab.LibvirtGuest) -> Iterator[str]:
    """The guest's node plugin in `initiator` mode, iscsid giving it its own IQN (what an
    earlier plugin in the guest published is gone first, so the decision read is this one's)."""
    kubectl(lab, "delete", "lbnode", lab.guest_node, "--ignore-not-found")
    iscsi.start_iscsid(kvm_guest)
    csi.start_initiator_node_service(kvm_guest, lab)
    yield lab.guest_node
    csi.stop_node_service(kvm_guest)
    iscsi.stop_iscsid(kvm_guest)
    kubectl(lab, "delete", "lbnode", lab.guest_node, "--ignore-not-found")


def accepted(found: dict[str, Any] | None) -> dict[str, Any] | None:
    conditions = ((found or {}).get("status") or {}).get("conditions") or []
    return next((c for c in conditions if c["type"] == "InitiatorsAccepted"), None)


def decision(lab: LabState, name: str) -> dict[str, Any]:
    found = accepted(observe.get(lab, "lbnode", name))
    assert found is not None, f"LunbridgeNode {name} not decided"
    return found


def test_a_node_publishes_itself_and_a_second_claim_on_its_iqn_is_refused(
    lab: LabState, initiator_node: str
) -> None:
    def published() -> dict[str, Any] | None:
        found = observe.get(lab, "lbnode", initiator_node)
        return found if accepted(found) else None

    node = observe.eventually(published, 120, f"LunbridgeNode {initiator_node} published and decided")
    assert node["spec"]["mode"] == "initiator"
    assert node["spec"]["iqn"] == iscsi.GUEST_IQN
    assert node["spec"]["providerID"].startswith("libvirt://")  # a guest, told to log in itself
    assert decision(lab, initiator_node)["status"] == "True", node["status"]

    impostor = f"it-impostor-{uuid.uuid4().hex[:6]}"
    observe.apply(lab, {"apiVersion": API_VERSION, "kind": "LunbridgeNode", "metadata": {"name": impostor},
                        "spec": {"mode": "initiator", "iqn": iscsi.GUEST_IQN}})  # fmt: skip
    try:
        refused = observe.eventually(
            lambda: accepted(observe.get(lab, "lbnode", impostor)), 60, "the claim decided"
        )
        both = kubectl(lab, "get", "lbnode", "-o", "yaml").stdout
        assert (refused["status"], refused["reason"]) == ("False", "InitiatorClaimed"), both
        found = observe.get(lab, "lbnode", impostor) or {}
        assert found["status"]["claimed"] == {iscsi.GUEST_IQN: initiator_node}
        observe.wait_events(lab, found, {"InitiatorClaimed"})
        assert decision(lab, initiator_node)["status"] == "True"  # the owner keeps it
    finally:
        kubectl(lab, "delete", "lbnode", impostor)


def test_a_token_bound_to_one_node_cannot_publish_another(lab: LabState, initiator_node: str) -> None:
    only = ("--show-only", "templates/rbac-node.yaml", "--show-only", "templates/serviceaccounts.yaml")
    shown = helm("template", "lb", str(CHART), "--namespace", NAMESPACE, *only)
    assert shown.returncode == 0, shown.stderr
    chart = [doc for doc in yaml.safe_load_all(shown.stdout) if doc]
    kubectl(lab, "create", "namespace", NAMESPACE)
    applied = kubectl(lab, "apply", "-f", "-", input_text=yaml.safe_dump_all(chart))
    assert applied.returncode == 0, applied.stderr
    pod = {"apiVersion": "v1", "kind": "Pod", "metadata": {"name": "node-plugin", "namespace": NAMESPACE},
           "spec": {"nodeName": initiator_node, "serviceAccountName": "lb-lunbridge-node",
                    "containers": [{"name": "p", "image": "lunbridge:test"}]}}  # fmt: skip
    made = kubectl(lab, "apply", "-f", "-", input_text=json.dumps(pod))
    assert made.returncode == 0, made.stderr
    try:
        bound = ("--bound-object-kind=Pod", "--bound-object-name=node-plugin")
        token = kubectl(lab, "-n", NAMESPACE, "create", "token", "lb-lunbridge-node", *bound).stdout.strip()

        def as_node(*args: str, body: dict[str, Any] | None = None) -> subprocess.CompletedProcess[str]:
            server = f"https://127.0.0.1:{lab.apiserver_port}"
            ca = Path(lab.lab_dir) / "pki" / "serving" / "apiserver.crt"
            argv = [str(paths.bin_dir() / "kubectl"), "--kubeconfig=/dev/null", f"--server={server}",
                    f"--certificate-authority={ca}", f"--token={token}", *args]  # fmt: skip
            if body is not None:
                argv += ["-f", "-"]
            return subprocess.run(argv, input=json.dumps(body), capture_output=True, text=True, timeout=60)

        whoami = json.loads(as_node("auth", "whoami", "-o", "json").stdout)["status"]["userInfo"]
        assert whoami["username"] == f"system:serviceaccount:{NAMESPACE}:lb-lunbridge-node", whoami
        assert whoami["extra"]["authentication.kubernetes.io/node-name"] == [initiator_node], whoami

        other = {"apiVersion": API_VERSION, "kind": "LunbridgeNode", "metadata": {"name": "someone-else"},
                 "spec": {"mode": "initiator", "iqn": "iqn.2004-10.org.lab:someone-else"}}  # fmt: skip

        def refused() -> str | None:  # a new policy takes effect within seconds
            done = as_node("create", body=other)
            if done.returncode == 0:
                kubectl(lab, "delete", "lbnode", "someone-else")
                return None
            return done.stderr

        denied = observe.eventually(refused, 30, "the admission policy in effect", every=1)
        assert f"this token is bound to node {initiator_node}, not someone-else" in denied, denied
        mine = {"apiVersion": API_VERSION, "kind": "LunbridgeNode", "metadata": {"name": initiator_node},
                "spec": {"mode": "initiator", "iqn": iscsi.GUEST_IQN}}  # fmt: skip
        allowed = as_node("apply", "--server-side", "--force-conflicts", body=mine)
        assert allowed.returncode == 0, allowed.stderr
    finally:
        kubectl(lab, "delete", "namespace", NAMESPACE, "--wait=false")
        for doc in chart:
            if doc["kind"] in ("ClusterRole", "ClusterRoleBinding", "ValidatingAdmissionPolicy",
                               "ValidatingAdmissionPolicyBinding"):  # fmt: skip
                kubectl(lab, "delete", doc["kind"], doc["metadata"]["name"], "--ignore-not-found")


def _stage(
    node: Any, volume_id: str, staging: str, context: dict[str, str], secrets: dict[str, str] | None = None
) -> None:
    capability = csi_pb2.VolumeCapability(
        mount=csi_pb2.VolumeCapability.MountVolume(fs_type="ext4"),
        access_mode=csi_pb2.VolumeCapability.AccessMode(
            mode=csi_pb2.VolumeCapability.AccessMode.SINGLE_NODE_WRITER
        ),
    )
    request = csi_pb2.NodeStageVolumeRequest(
        volume_id=volume_id, staging_target_path=staging, volume_capability=capability,
        publish_context=context, secrets=secrets or {},
    )  # fmt: skip
    node.NodeStageVolume(request, timeout=120)


def test_a_disk_on_the_initiator_node_stages_through_the_nodes_own_login(
    lab: LabState, kvm_guest: libvirt_lab.LibvirtGuest, initiator_node: str, tgt: tgt_lab.Tgt,
    make_lun: Callable[..., tgt_lab.LabLun],
) -> None:  # fmt: skip
    observe.wait_node_accepted(lab, initiator_node, iscsi.GUEST_IQN)
    name = f"it-bare-{uuid.uuid4().hex[:6]}"
    observe.apply(lab, observe.vdisk(name, nodeName=initiator_node))
    try:
        disk = observe.wait_ready(lab, name, 90)
        lun_name = disk["status"]["lun"]["name"]
        attachment = disk["status"]["attachment"]
        assert attachment["mode"] == "initiator", attachment
        assert attachment["portals"] == ["{}:{}".format(*tgt_lab.GUEST_TGT_PORTAL)]
        target = attachment["targetIqn"]
        assert "vmId" not in attachment, attachment
        assert target.endswith(f":node-{initiator_node}"), attachment
        assert nexus_initiators(tgt, target) == []  # nothing logs in before the stage
        context = PublishContext.from_status(VirtualDiskStatus.from_dict(disk["status"])).to_dict()
        staging = str(csi.staging_dir(Path(lab.lab_dir)) / name)
        with grpc.insecure_channel(lab.node_endpoint) as channel:
            node = csi_pb2_grpc.NodeStub(channel)  # type: ignore[no-untyped-call]
            _stage(node, name, staging, context)
            assert nexus_initiators(tgt, target) == [iscsi.GUEST_IQN]
            kvm_guest.run(f"echo written-by-bare > {staging}/proof && sync", timeout=60, check=True)
            _stage(node, name, staging, context)  # again: the session and the mount are kept
            assert nexus_initiators(tgt, target) == [iscsi.GUEST_IQN]
            csi.start_initiator_node_service(
                kvm_guest, lab
            )  # a restarted plugin adopts the session: no second one
            _stage(node, name, staging, context)
            assert nexus_initiators(tgt, target) == [iscsi.GUEST_IQN]
            # as after a reboot: no mount, no session, no record; the stage logs in again
            kvm_guest.run(f"umount {staging}", timeout=60, check=True)
            iscsi.stop_iscsid(kvm_guest)
            iscsi.start_iscsid(kvm_guest)
            assert nexus_initiators(tgt, target) == []
            _stage(node, name, staging, context)
            assert nexus_initiators(tgt, target) == [iscsi.GUEST_IQN]
            proof = kvm_guest.run(f"cat {staging}/proof", timeout=60, check=True).stdout
            assert proof.strip() == "written-by-bare"  # the disk was mounted, not formatted again

            masked = make_lun(["iqn.2024-01.io.lunbridge.lab:another-node"], size=16 << 20)
            theirs = PublishContext(AttachMode.INITIATOR, f"naa.{masked.naa}", target_iqn=masked.target,
                                    portals=tuple(attachment["portals"]), lun_id=masked.lun)  # fmt: skip
            with pytest.raises(grpc.RpcError) as refused:
                _stage(node, f"{name}-masked", f"{staging}-masked", theirs.to_dict())
            assert refused.value.code() == grpc.StatusCode.FAILED_PRECONDITION
            assert "this node's IQN is not among the target's initiators" in str(refused.value.details())

            request = csi_pb2.NodeUnstageVolumeRequest(volume_id=name, staging_target_path=staging)
            node.NodeUnstageVolume(request, timeout=120)
        assert nexus_initiators(tgt, target) == []  # the last LUN went: logged out
        sessions = kvm_guest.run("ls /sys/class/iscsi_session", timeout=30).stdout.split()
        assert sessions == [], sessions
    finally:
        kubectl(lab, "delete", "vdisk", name, "--wait=false")
    observe.wait_gone(lab, "vdisk", name, 90)
    # this disk's LU, on any target: the node's target serves every disk of the node, and other
    # tests' disks of the guest's node share the session lab
    left = [
        (t.name, lu) for t in observe.targets(tgt).values() for lu in t.lus.values() if lun_name in lu.path
    ]
    assert left == [], left


def test_a_wrong_chap_secret_is_refused_once_and_mutual_chap_stages(
    lab: LabState, kvm_guest: libvirt_lab.LibvirtGuest, initiator_node: str, tgt: tgt_lab.Tgt,
    make_lun: Callable[..., tgt_lab.LabLun],
) -> None:  # fmt: skip
    lun = make_lun([iscsi.GUEST_IQN], size=16 << 20)
    user, secret = f"it-{uuid.uuid4().hex[:6]}", f"chap-{uuid.uuid4().hex}"
    tgt.adm("--op", "new", "--mode", "account", "--user", user, "--password", secret)
    tgt.adm("--op", "bind", "--mode", "account", "--tid", str(lun.tid), "--user", user)
    array, array_secret = f"{user}-array", f"array-{uuid.uuid4().hex}"  # mutual: the target proves one too
    tgt.adm("--op", "new", "--mode", "account", "--user", array, "--password", array_secret)
    tgt.adm("--op", "bind", "--mode", "account", "--tid", str(lun.tid), "--user", array, "--outgoing")
    portal = "{}:{}".format(*tgt_lab.GUEST_TGT_PORTAL)
    context = PublishContext(AttachMode.INITIATOR, f"naa.{lun.naa}", target_iqn=lun.target, portals=(portal,),
                             lun_id=lun.lun).to_dict()  # fmt: skip
    name = f"it-chap-{uuid.uuid4().hex[:6]}"
    staging = str(csi.staging_dir(Path(lab.lab_dir)) / name)
    wrong = {"node.session.auth.username": user, "node.session.auth.password": "not-the-right-secret"}
    try:
        with grpc.insecure_channel(lab.node_endpoint) as channel:
            node = csi_pb2_grpc.NodeStub(channel)  # type: ignore[no-untyped-call]
            started = time.monotonic()
            with pytest.raises(grpc.RpcError) as refused:
                _stage(node, name, staging, context, secrets=wrong)
            assert refused.value.code() == grpc.StatusCode.UNAUTHENTICATED, refused.value.details()
            said = str(refused.value.details())
            assert "the CHAP user or secret of the node-stage secret is wrong" in said
            assert "not-the-right-secret" not in said
            assert time.monotonic() - started < 30  # one attempt, not a loop of them
            records = kvm_guest.run("iscsiadm -m node", timeout=30, env=iscsi.guest_env())
            assert records.returncode == 21, records.stdout  # no record: nothing retries behind us
            time.sleep(2)
            assert nexus_initiators(tgt, lun.target) == []

            right = {**wrong, "node.session.auth.password": secret, "node.session.auth.username_in": array,
                     "node.session.auth.password_in": array_secret}  # fmt: skip
            _stage(node, name, staging, context, secrets=right)
            assert nexus_initiators(tgt, lun.target) == [iscsi.GUEST_IQN]
            node.NodeUnstageVolume(
                csi_pb2.NodeUnstageVolumeRequest(volume_id=name, staging_target_path=staging), timeout=120
            )
        assert nexus_initiators(tgt, lun.target) == []
    finally:
        for account in (user, array):
            tgt.adm("--op", "delete", "--mode", "account", "--user", account, check=False)
