"""The Helm chart, checked with the real helm (hack/peers/build-tools.sh) and the lab's real
kube-apiserver: it lints; it renders with the default values and with a values file that sets
every option; those renders, and the renders with components switched off (what is left of
them: test_chart_components.py), pass the API server's own validation (`kubectl apply
--dry-run=server`, with the chart's CRDs installed); its RBAC names every verb and resource;
its values schema turns bad values away with a message; its CRDs are crds/'s.
snapshots.enabled brings the csi-snapshotter sidecar and its RBAC; the optional
VolumeSnapshotClass passes the API server's validation against external-snapshotter's CRDs
(applied first, as a cluster has them). libvirt.socketDir mounts the host's libvirt socket folder
into the operator for a local URI. The storage backends: test_chart_backends.py."""

from __future__ import annotations

import json
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
import yaml

from lunbridge.storage.tgt import TgtConfig
from tests.integration.chart.rendering import (
    ALL_VALUES,
    BACKENDS,
    CHART,
    LEGACY,
    NAMESPACE,
    OPERATOR,
    TWO_BACKENDS,
    backends_args,
    by_name,
    helm,
    host_folders,
    operator_pod,
    render,
    sections,
)
from tests.lab import paths
from tests.lab.lab import LabState, kubectl


def options(values: dict[str, Any], schema: dict[str, Any], prefix: str = "") -> set[str]:
    """The chart's options: keys the schema describes, down to free-form objects (resources...)."""
    found: set[str] = set()
    for key, value in values.items():
        path = f"{prefix}.{key}" if prefix else key
        sub = schema.get("properties", {}).get(key, {})
        found |= options(value, sub, path) if isinstance(value, dict) and "properties" in sub else {path}
    return found


@pytest.fixture(scope="module")
def namespace(lab: LabState) -> Iterator[str]:
    """The release's namespace, and external-snapshotter's CRDs (build-tools.sh) as a cluster has them."""
    files = sorted(paths.snapshot_crds_dir().glob("*.yaml"))
    assert files, f"no CRDs in {paths.snapshot_crds_dir()}: run hack/peers/build-tools.sh"
    done = kubectl(lab, "apply", "--server-side", *[f"--filename={path}" for path in files])
    assert done.returncode == 0, done.stderr
    done = kubectl(lab, "wait", "--for=condition=Established", "--timeout=30s",
                   "crd/volumesnapshotclasses.snapshot.storage.k8s.io")  # fmt: skip
    assert done.returncode == 0, done.stderr
    kubectl(lab, "create", "namespace", NAMESPACE)
    yield NAMESPACE
    kubectl(lab, "delete", "namespace", NAMESPACE, "--wait=false")


def test_helm_lint_passes() -> None:
    done = helm("lint", str(CHART), "--strict")
    assert done.returncode == 0, done.stdout + done.stderr
    done = helm("lint", str(CHART), "--strict", "--values", str(ALL_VALUES))
    assert done.returncode == 0, done.stdout + done.stderr


def test_the_full_values_file_sets_every_option() -> None:
    defaults = yaml.safe_load((CHART / "values.yaml").read_text())
    given = yaml.safe_load(ALL_VALUES.read_text())
    schema = json.loads((CHART / "values.schema.json").read_text())
    assert options(defaults, schema) - options(given, schema) == set()
    assert set(schema["properties"]) - {"global"} == set(defaults)


WORKLOADS = {"ConfigMap", "CSIDriver", "DaemonSet", "Deployment", "ServiceAccount", "StorageClass"}
RBAC = {"ClusterRole", "ClusterRoleBinding", "Role", "RoleBinding"}
NODE_POLICY = {
    "ValidatingAdmissionPolicy",
    "ValidatingAdmissionPolicyBinding",
}  # a node publishes itself only
DRIVER = {"CSIDriver", "StorageClass"}  # whichever components are off
NODE_ONLY = DRIVER | {"DaemonSet", "ServiceAccount", "ClusterRole", "ClusterRoleBinding"} | NODE_POLICY
OFF = {name: ["--set", f"{name}.enabled=false"] for name in ("operator", "controller", "node")}


@pytest.mark.parametrize(
    ("values", "kinds"),
    [
        ([], WORKLOADS | RBAC | NODE_POLICY),
        (["--values", str(ALL_VALUES)], WORKLOADS | RBAC | NODE_POLICY | {"Secret", "VolumeSnapshotClass"}),
        (LEGACY, WORKLOADS | RBAC | NODE_POLICY),
        (backends_args(TWO_BACKENDS), WORKLOADS | RBAC | NODE_POLICY),
        # the backends ConfigMap and the vCenter Secret are the operator's only
        (["--values", str(ALL_VALUES), *OFF["operator"]],
         WORKLOADS - {"ConfigMap"} | RBAC | NODE_POLICY | {"VolumeSnapshotClass"}),
        (OFF["controller"], WORKLOADS | RBAC - {"Role", "RoleBinding"} | NODE_POLICY),  # the leases' Role
        (OFF["node"], WORKLOADS - {"DaemonSet"} | RBAC),
        ([*OFF["operator"], *OFF["controller"]], NODE_ONLY),  # a lab's node: the DaemonSet only
        ([*OFF["operator"], *OFF["controller"], *OFF["node"]], DRIVER),
    ],
    ids=["defaults", "every-option", "legacy-tgt", "two-backends", "every-option-no-operator",
         "no-controller", "no-node", "node-only", "driver-only"],
)  # fmt: skip
def test_the_render_passes_the_api_servers_validation(
    lab: LabState, namespace: str, values: list[str], kinds: set[str]
) -> None:
    documents = render(*values)
    assert {doc["kind"] for doc in documents} == kinds
    manifest = json.dumps({"apiVersion": "v1", "kind": "List", "items": documents})
    done = kubectl(lab, "apply", "--dry-run=server", "--filename=-", input_text=manifest)
    assert done.returncode == 0, done.stderr
    assert done.stdout.count("(server dry run)") == len(documents)


def test_every_option_lands_where_it_should() -> None:
    rendered = render("--values", str(ALL_VALUES))
    documents = by_name(rendered)
    operator = documents[OPERATOR]["spec"]
    env = {e["name"]: e.get("value") for e in operator["template"]["spec"]["containers"][0]["env"]}
    assert env["LUNBRIDGE_BACKENDS_FILE"] == "/etc/lunbridge/config/backends.yaml"
    assert not [name for name in env if name.startswith("LUNBRIDGE_TGT_")]  # the file is the one way
    configs = sections(rendered)
    assert [(c.name, c.default, c.credentials_dir) for c in configs] == [
        ("fast", True, Path("/etc/lunbridge/backends/fast")), ("bulk", False, None)]  # fmt: skip
    fast = TgtConfig.from_settings(configs[0].settings)
    assert (fast.portal, fast.control, fast.timeout, fast.copy_timeout) == ("192.0.2.10:3260", 7, 20, 600)
    assert fast.iqn_prefix == "iqn.2024-01.invalid.example.fast:"
    folders = ("/run/tgtd", "/srv/ssd/pool", "/srv/ssd/scratch", "/srv/ssd/state", "/srv/hdd/pool",
               "/run/libvirt")  # fmt: skip
    # storage.tgt.poolDir is not used beside `backends`; storage.tgt.runDir is; libvirt.socketDir too
    assert host_folders(operator["template"]) == {folder: folder for folder in folders}
    assert env["LUNBRIDGE_LIBVIRT_URI"] == "qemu+ssh://root@kvm1.example.invalid/system"
    assert env["LUNBRIDGE_PEERING"] == "lunbridge-test"
    assert env["LUNBRIDGE_DISK_SLOTS"] == "64"
    assert env["LUNBRIDGE_API_CONNECTIONS"] == "32"
    assert "POD_ID" in env  # kopf's peering identity comes from the pod name
    assert env["PYTHONMALLOC"] == "malloc"  # what lets the operator give a burst's memory back
    assert operator["replicas"] == 2
    secret = documents[("Secret", "lb-lunbridge-vsphere")]
    assert secret["stringData"]["password"] == "not-a-real-password"
    assert "not-a-real-password" not in json.dumps(operator)  # only the Secret holds it
    node = documents[("DaemonSet", "lb-lunbridge-node")]["spec"]["template"]["spec"]
    assert {"path": "/var/lib/k0s/kubelet", "type": "Directory"} in [
        v.get("hostPath") for v in node["volumes"]
    ]
    plugin = node["containers"][0]
    assert plugin["securityContext"]["privileged"] is True
    kubelet_mount = [m for m in plugin["volumeMounts"] if m["mountPath"] == "/var/lib/k0s/kubelet"]
    assert kubelet_mount[0]["mountPropagation"] == "Bidirectional"
    assert "--attach-mode=initiator" in plugin["args"]
    assert node["hostNetwork"] is True  # hostIscsi: iscsiadm reaches the host's iscsid
    mounted = {m["mountPath"] for m in plugin["volumeMounts"]}
    assert mounted >= {"/etc/iscsi", "/var/lib/iscsi", "/run/lock/iscsi"}
    assert "--node-name=$(NODE_NAME)" in plugin["args"]  # the node channel, NODE_NAME from the pod
    assert plugin["env"] == [
        {"name": "NODE_NAME", "valueFrom": {"fieldRef": {"fieldPath": "spec.nodeName"}}},
        {"name": "KUBERNETES_SERVICE_HOST", "value": "fd00:10::1"},
        {"name": "KUBERNETES_SERVICE_PORT", "value": "6443"},
        {"name": "LUNBRIDGE_CSI_KVM_MAX_VOLUMES", "value": "32"},
    ]  # then node.kubernetesService, then node.extraEnv
    assert "priorityClassName" not in node  # node.priorityClassName: "" is none
    assert "--verify-check=pg-data=pg_checksums --check -D {mount}/pgdata" in plugin["args"]
    node_role = documents[("ClusterRole", "lb-lunbridge-node")]
    grants = [(r["apiGroups"], r["resources"], r["verbs"]) for r in node_role["rules"]]
    assert grants == [  # the channel reads its work and writes its reports, nothing else
        (["lunbridge.io"], ["diskverifications"], ["get", "list", "watch"]),
        (["lunbridge.io"], ["diskverifications/status"], ["patch"]),
        (["lunbridge.io"], ["lunbridgenodes"], ["get", "create", "patch"]),
    ]
    policy = documents[("ValidatingAdmissionPolicy", "lb-lunbridge-node-publishes-itself")]["spec"]
    who = policy["matchConditions"][0]["expression"]
    assert f"system:serviceaccount:{NAMESPACE}:lb-lunbridge-node" in who
    storage_class = documents[("StorageClass", "lunbridge-fast")]
    assert storage_class["parameters"] == {"csi.storage.k8s.io/fstype": "xfs", "backend": "bulk",
                                           "pool": "default", "scope": "cluster"}  # fmt: skip
    assert storage_class["metadata"]["annotations"]["storageclass.kubernetes.io/is-default-class"] == "true"
    controller = documents[("Deployment", "lb-lunbridge-controller")]["spec"]["template"]["spec"]
    names = [c["name"] for c in controller["containers"]]
    assert names == ["csi-plugin", "csi-provisioner", "csi-attacher", "csi-resizer", "csi-snapshotter",
                     "csi-external-health-monitor-controller", "liveness-probe"]  # fmt: skip
    assert "--list-volumes-interval=30s" in controller["containers"][5]["args"]
    assert controller["containers"][4]["args"] == ["--csi-address=/csi/csi.sock", "--leader-election=true",
        f"--leader-election-namespace={NAMESPACE}", "--timeout=300s", "--extra-create-metadata"]  # fmt: skip
    assert "--leader-election=true" in controller["containers"][1]["args"]  # 2 replicas
    assert "--capacity-bytes=1099511627776" in controller["containers"][0]["args"]


def test_the_volume_snapshot_class_marks_itself_for_the_backup_tools() -> None:
    documents = by_name(render("--values", str(ALL_VALUES)))
    snapshot_class = documents[("VolumeSnapshotClass", "lunbridge-backup")]
    assert (snapshot_class["driver"], snapshot_class["deletionPolicy"]) == ("csi.lunbridge.io", "Retain")
    labels = snapshot_class["metadata"]["labels"]
    assert (labels["velero.io/csi-volumesnapshot-class"], labels["team"]) == ("true", "storage")
    assert snapshot_class["metadata"]["annotations"] == {
        "snapshot.storage.kubernetes.io/is-default-class": "true", "k10.kasten.io/is-snapshot-class": "true",
        "lunbridge.io/purpose": "backup"}  # fmt: skip
    plain = by_name(render("--set", "snapshots.volumeSnapshotClass.create=true"))
    snapshot_class = plain[("VolumeSnapshotClass", "lunbridge")]
    assert (snapshot_class["driver"], snapshot_class["deletionPolicy"]) == ("csi.lunbridge.io", "Delete")
    assert "velero.io/csi-volumesnapshot-class" not in snapshot_class["metadata"]["labels"]
    assert "annotations" not in snapshot_class["metadata"]  # neither the default class nor Kasten's


def snapshot_grants(documents: list[dict[str, Any]]) -> set[tuple[str, str]]:
    """(resource, verb) that the ClusterRoles grant in the two snapshot API groups."""
    groups = {"snapshot.storage.k8s.io", "groupsnapshot.storage.k8s.io"}
    rules = [rule for doc in documents if doc["kind"] == "ClusterRole" for rule in doc["rules"]]
    return {(resource, verb) for rule in rules if groups & set(rule["apiGroups"])
            for resource in rule["resources"] for verb in rule["verbs"]}  # fmt: skip


def test_snapshots_bring_the_sidecar_and_its_rbac_and_can_be_turned_off() -> None:
    documents = render()
    controller = by_name(documents)[("Deployment", "lb-lunbridge-controller")]["spec"]["template"]["spec"]
    sidecar = {c["name"]: c for c in controller["containers"]}["csi-snapshotter"]
    assert sidecar["image"] == "registry.k8s.io/sig-storage/csi-snapshotter:v8.7.0"
    assert "--leader-election=false" in sidecar["args"]  # one replica
    assert not [doc for doc in documents if doc["kind"] == "VolumeSnapshotClass"]  # not by default
    granted = snapshot_grants(documents)
    for resource in ("volumesnapshotcontents", "volumegroupsnapshotcontents"):
        assert {(resource, "watch"), (resource, "update"), (resource, "patch")} <= granted
        assert {(f"{resource}/status", "update"), (f"{resource}/status", "patch")} <= granted
    assert {("volumesnapshots", "get"), ("volumesnapshots", "list"), ("volumesnapshotclasses", "watch"),
            ("volumegroupsnapshotclasses", "watch")} <= granted  # fmt: skip
    off = render("--set", "snapshots.enabled=false")
    controller = by_name(off)[("Deployment", "lb-lunbridge-controller")]["spec"]["template"]["spec"]
    assert "csi-snapshotter" not in [c["name"] for c in controller["containers"]]
    assert snapshot_grants(off) == set()
    done = helm("template", "lb", str(CHART), "--set", "snapshots.enabled=false",
                "--set", "snapshots.volumeSnapshotClass.create=true")  # fmt: skip
    assert done.returncode != 0
    assert "snapshots.volumeSnapshotClass.create needs snapshots.enabled" in done.stderr, done.stderr


def test_the_health_monitor_is_off_by_default_and_turned_on_lists_volume_conditions() -> None:
    def containers(*args: str) -> dict[str, Any]:
        documents = render(*args)
        spec = by_name(documents)[("Deployment", "lb-lunbridge-controller")]["spec"]["template"]["spec"]
        return {c["name"]: c for c in spec["containers"]}

    assert "csi-external-health-monitor-controller" not in containers()
    monitor = containers("--set", "healthMonitor.enabled=true", "--set", "healthMonitor.interval=30s")[
        "csi-external-health-monitor-controller"
    ]
    assert monitor["image"] == "registry.k8s.io/sig-storage/csi-external-health-monitor-controller:v0.18.0"
    assert "--list-volumes-interval=30s" in monitor["args"]
    assert "--csi-address=/csi/csi.sock" in monitor["args"]
    done = helm("template", "lb", str(CHART), "--set", "healthMonitor.interval=soon")
    assert done.returncode != 0
    assert "/healthMonitor/interval" in done.stderr, done.stderr


LIBVIRT = ["--set", "vsphere.enabled=false", "--set", "libvirt.enabled=true", "--set", "libvirt.uri=qemu:///system",
           "--set", "libvirt.hostIqn=iqn.2024-01.invalid.example:kvm1"]  # fmt: skip


@pytest.mark.parametrize("folder", ["/var/run/libvirt", "/srv/libvirt-lab"])
def test_a_local_libvirt_uri_gets_the_hosts_socket_folder(folder: str) -> None:
    """qemu:///system dials /var/run/libvirt/libvirt-sock, ?socket=/srv/libvirt-lab/libvirt-sock that
    folder: the operator pod gets the host's folder at the same path."""
    pod = operator_pod(render(*LIBVIRT, "--set", f"libvirt.socketDir={folder}"))
    assert host_folders(pod) == {folder: folder}  # at the same path in the operator container
    volume = {v["name"]: v for v in pod["spec"]["volumes"]}["libvirt-socket"]
    assert volume["hostPath"] == {"path": folder, "type": "Directory"}  # libvirt's: never made here
    mount = {m["name"]: m for m in pod["spec"]["containers"][0]["volumeMounts"]}["libvirt-socket"]
    assert mount == {"name": "libvirt-socket", "mountPath": folder}  # a socket is dialled: writable
    # none without it, none while libvirt is off, none without the operator
    assert host_folders(operator_pod(render(*LIBVIRT))) == {}
    assert "libvirt-socket" not in json.dumps(render("--set", f"libvirt.socketDir={folder}"))
    assert "libvirt-socket" not in json.dumps(
        render(*LIBVIRT, "--set", f"libvirt.socketDir={folder}", "--set", "operator.enabled=false")
    )
    done = helm("lint", str(CHART), "--strict", *LIBVIRT, "--set", f"libvirt.socketDir={folder}")
    assert done.returncode == 0, done.stdout + done.stderr


def test_the_libvirt_socket_folder_is_not_a_tgt_folder() -> None:
    """Two volumes at one mount path would be refused by the API server: the chart says why first."""
    done = helm("template", "lb", str(CHART), *LIBVIRT, *LEGACY, "--set", "storage.tgt.runDir=/run/shared",
                "--set", "libvirt.socketDir=/run/shared/")  # fmt: skip
    assert done.returncode != 0
    assert "libvirt.socketDir /run/shared is already mounted for a tgt backend" in done.stderr, done.stderr


def test_rbac_names_every_verb_and_resource() -> None:
    for values in ([], ["--values", str(ALL_VALUES)]):
        for doc in render(*values):
            for rule in doc.get("rules", []) if doc["kind"] in ("ClusterRole", "Role") else []:
                where = (doc["metadata"]["name"], rule)
                assert "*" not in rule["verbs"], where
                assert "*" not in rule["resources"], where


def test_the_default_render_holds_no_secret_and_notes_say_what_is_missing(lab: LabState) -> None:
    documents = render()
    assert not [doc for doc in documents if doc["kind"] == "Secret"]
    configmap = by_name(documents)[BACKENDS]
    assert yaml.safe_load(configmap["data"]["backends.yaml"]) == {"backends": []}  # the operator says so
    done = helm("install", "lb", str(CHART), "--dry-run=client", "--namespace", NAMESPACE,
                "--kubeconfig", str(lab.kubeconfig))  # fmt: skip
    assert done.returncode == 0, done.stderr
    assert "create secret generic lb-lunbridge-vsphere" in done.stdout
    assert "NOT READY: no storage backend is configured" in done.stdout
    assert "storage.tgt.portal" in done.stdout


@pytest.mark.parametrize(
    ("setting", "message"),
    [
        ("operator.logFormat=xml", "value must be one of 'plain', 'json'"),
        ("storage.tgt.portal=no-port", "does not match pattern"),
        ("storageClass.parameters.colour=blue", "colour"),
        ("controller.replicas=-1", "minimum"),
        ("vsphere.password=secret", "set vsphere.url and vsphere.username too"),
        ("node.hostNetwork=yes", "at '/node/hostNetwork': got string, want boolean"),
        ("operator.enabled=no", "at '/operator/enabled': got string, want boolean"),
        ("controller.priorityClassName=Not_A_Name", "at '/controller/priorityClassName'"),
        ("image.pullPolicy=Sometimes", "at '/image/pullPolicy': value must be one of"),
        ("image.repository=lunbridge:0.1.0", "at '/image/repository'"),  # the tag is image.tag
        ("controller.extraEnv[0].value=x", "at '/controller/extraEnv/0': missing property 'name'"),
        # the API server's address: a host, no scheme or port (those are port's, and https is implied)
        ("operator.kubernetesService.host=https://192.0.2.1", "at '/operator/kubernetesService/host'"),
        ("controller.kubernetesService.host=192.0.2.1:6443", "at '/controller/kubernetesService/host'"),
        ("node.kubernetesService.host=[fd00::1]", "at '/node/kubernetesService/host'"),  # no brackets
        ("node.kubernetesService.port=0", "at '/node/kubernetesService/port': minimum"),
        ("controller.kubernetesService.port=65536", "at '/controller/kubernetesService/port': maximum"),
        ("operator.kubernetesService.port=https", "at '/operator/kubernetesService/port'"),
        ("controller.kubernetesService.url=x",
         "at '/controller/kubernetesService': additional properties 'url' not allowed"),
        ("libvirt.socketDir=var/run/libvirt", "at '/libvirt/socketDir'"),  # absolute only
        ("node.attachMode=initiator,node.channel=false", "node.attachMode=initiator needs node.channel=true"),
        ("snapshots.volumeSnapshotClass.deletionPolicy=Keep",
         "at '/snapshots/volumeSnapshotClass/deletionPolicy': value must be one of 'Delete', 'Retain'"),
    ],
)  # fmt: skip
def test_bad_values_are_refused_with_a_message(setting: str, message: str) -> None:
    done = helm("template", "lb", str(CHART), "--set", setting)
    assert done.returncode != 0
    assert message in done.stderr, done.stderr
