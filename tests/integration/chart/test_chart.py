"""The Helm chart, checked with the real helm (hack/peers/build-tools.sh) and the lab's real
kube-apiserver: it lints; it renders with the default values and with a values file that sets
every option; both renders pass the API server's own validation (`kubectl apply
--dry-run=server`, with the chart's CRDs installed); its RBAC names every verb and resource;
its values schema turns bad values away with a message; its CRDs are crds/'s. The storage
backends (`backends`, or one `tgt` from the old storage.tgt.* values) become one ConfigMap that
the operator's own parser (lunbridge.storage.factory) accepts. snapshots.enabled brings the
csi-snapshotter sidecar and its RBAC; the optional VolumeSnapshotClass passes the API server's
validation against external-snapshotter's CRDs (applied first, as a cluster has them)."""

from __future__ import annotations

import json
import subprocess
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
import yaml

from lunbridge.storage.factory import BackendConfig, check, parse_backends
from lunbridge.storage.tgt import TgtConfig
from tests.lab import paths
from tests.lab.lab import LabState, kubectl

CHART = paths.REPO_DIR / "charts" / "lunbridge"
ALL_VALUES = Path(__file__).with_name("values-all.yaml")
NAMESPACE = "lunbridge-chart-test"
OPERATOR = ("Deployment", "lb-lunbridge-operator")
BACKENDS = ("ConfigMap", "lb-lunbridge-backends")
# two tgtd backends on one host (-C 1 and -C 2), the first with a credentials Secret
TWO_BACKENDS: list[dict[str, Any]] = [
    {"name": "fast", "type": "tgt", "default": True, "existingSecret": "fast-credentials",
     "settings": {"portal": "192.0.2.10:3260", "controlPort": 1,
                  "pools": {"default": "/srv/ssd/pool", "scratch": "/srv/ssd/scratch"},
                  "timeoutSeconds": 20}},
    {"name": "bulk", "type": "tgt",
     "settings": {"portal": "192.0.2.10:3261", "controlPort": 2, "poolDir": "/srv/hdd/pool",
                  "stateFile": "/srv/hdd/state/tgt-state.json"}},
]  # fmt: skip
LEGACY = ["--set", "storage.tgt.portal=192.0.2.20:3260", "--set", "storage.tgt.controlPort=3"]


def helm(*args: str) -> subprocess.CompletedProcess[str]:
    return subprocess.run([str(paths.bin_dir() / "helm"), *args], capture_output=True, text=True, check=False)


def render(*args: str) -> list[dict[str, Any]]:
    done = helm("template", "lb", str(CHART), "--namespace", NAMESPACE, *args)
    assert done.returncode == 0, done.stderr
    return [doc for doc in yaml.safe_load_all(done.stdout) if doc]


def backends_args(backends: list[dict[str, Any]]) -> list[str]:
    return ["--set-json", "backends=" + json.dumps(backends)]


def by_name(documents: list[dict[str, Any]]) -> dict[tuple[str, str], dict[str, Any]]:
    return {(doc["kind"], doc["metadata"]["name"]): doc for doc in documents}


def operator_pod(documents: list[dict[str, Any]]) -> dict[str, Any]:
    pod: dict[str, Any] = by_name(documents)[OPERATOR]["spec"]["template"]
    return pod


def sections(documents: list[dict[str, Any]]) -> list[BackendConfig]:
    """The one ConfigMap's backends.yaml, read as the operator reads --backends-file."""
    configmaps = [doc for doc in documents if doc["kind"] == "ConfigMap"]
    assert [(doc["kind"], doc["metadata"]["name"]) for doc in configmaps] == [BACKENDS]
    data = yaml.safe_load(configmaps[0]["data"]["backends.yaml"])
    assert set(data) == {"backends"}
    configs = parse_backends(data["backends"])
    for config in configs:
        check(config)  # the settings the operator checks before it starts
    return configs


def host_folders(pod: dict[str, Any]) -> dict[str, str]:
    """hostPath folder → where the operator container has it."""
    volumes = {v["name"]: v for v in pod["spec"]["volumes"]}
    mounts = pod["spec"]["containers"][0]["volumeMounts"]
    return {volumes[m["name"]]["hostPath"]["path"]: m["mountPath"] for m in mounts
            if "hostPath" in volumes[m["name"]]}  # fmt: skip


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


@pytest.mark.parametrize(
    "values",
    [[], ["--values", str(ALL_VALUES)], LEGACY, backends_args(TWO_BACKENDS)],
    ids=["defaults", "every-option", "legacy-tgt", "two-backends"],
)
def test_the_render_passes_the_api_servers_validation(
    lab: LabState, namespace: str, values: list[str]
) -> None:
    documents = render(*values)
    kinds = {doc["kind"] for doc in documents}
    workloads = {"ConfigMap", "CSIDriver", "DaemonSet", "Deployment", "ServiceAccount", "StorageClass"}
    rbac = {"ClusterRole", "ClusterRoleBinding", "Role", "RoleBinding"}
    every_option = {"Secret", "VolumeSnapshotClass"} if "--values" in values else set()
    assert kinds == workloads | rbac | every_option
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
    folders = ("/run/tgtd", "/srv/ssd/pool", "/srv/ssd/scratch", "/srv/ssd/state", "/srv/hdd/pool")
    # storage.tgt.poolDir is not used beside `backends`; storage.tgt.runDir is
    assert host_folders(operator["template"]) == {folder: folder for folder in folders}
    assert env["LUNBRIDGE_LIBVIRT_URI"] == "qemu+ssh://root@kvm1.example.invalid/system"
    assert env["LUNBRIDGE_PEERING"] == "lunbridge-test"
    assert "POD_ID" in env  # kopf's peering identity comes from the pod name
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
    storage_class = documents[("StorageClass", "lunbridge-fast")]
    assert storage_class["parameters"] == {"csi.storage.k8s.io/fstype": "xfs", "backend": "bulk",
                                           "pool": "default", "scope": "cluster"}  # fmt: skip
    assert storage_class["metadata"]["annotations"]["storageclass.kubernetes.io/is-default-class"] == "true"
    controller = documents[("Deployment", "lb-lunbridge-controller")]["spec"]["template"]["spec"]
    names = [c["name"] for c in controller["containers"]]
    assert names == ["csi-plugin", "csi-provisioner", "csi-attacher", "csi-resizer", "csi-snapshotter",
                     "liveness-probe"]  # fmt: skip
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


def test_the_notes_name_the_configured_backends(lab: LabState) -> None:
    for values, lines in [
        (backends_args(TWO_BACKENDS), ["  - fast: tgt at 192.0.2.10:3260, the default; credentials: Secret "
                                       "fast-credentials", "  - bulk: tgt at 192.0.2.10:3261\n"]),
        (LEGACY, ["  - tgt: tgt at 192.0.2.20:3260, the default\n"]),
    ]:  # fmt: skip
        done = helm("install", "lb", str(CHART), "--dry-run=client", "--namespace", NAMESPACE,
                    "--kubeconfig", str(lab.kubeconfig), *values)  # fmt: skip
        assert done.returncode == 0, done.stderr
        notes = done.stdout.split("NOTES:", 1)[1]
        assert "Storage backends (ConfigMap lb-lunbridge-backends, backends.yaml):" in notes
        for line in lines:
            assert line in notes, notes
        assert "no storage backend is configured" not in notes


def test_a_backends_list_renders_one_configmap_the_operator_parses() -> None:
    documents = render(*backends_args(TWO_BACKENDS))
    configs = sections(documents)
    assert [(c.name, c.type, c.default) for c in configs] == [("fast", "tgt", True), ("bulk", "tgt", False)]
    fast, bulk = (TgtConfig.from_settings(c.settings) for c in configs)
    assert fast.control == 1
    assert fast.pools == {"default": Path("/srv/ssd/pool"), "scratch": Path("/srv/ssd/scratch")}
    assert fast.state_file == Path("/srv/ssd/pool/tgt-state.json")
    assert (bulk.control, bulk.state_file) == (2, Path("/srv/hdd/state/tgt-state.json"))
    pod = operator_pod(documents)
    container = pod["spec"]["containers"][0]
    env = {e["name"]: e.get("value") for e in container["env"]}
    assert not [name for name in env if name.startswith("LUNBRIDGE_TGT_")]
    mounts = {m["name"]: m for m in container["volumeMounts"]}
    volumes = {v["name"]: v for v in pod["spec"]["volumes"]}
    assert volumes["backends"]["configMap"]["name"] == BACKENDS[1]
    assert mounts["backends"]["readOnly"] is True
    assert env["LUNBRIDGE_BACKENDS_FILE"] == mounts["backends"]["mountPath"] + "/backends.yaml"
    # every folder the two backends write (pools, the state file's folder) and tgtd's sockets
    assert host_folders(pod) == {folder: folder for folder in (
        "/var/run/tgtd", "/srv/ssd/pool", "/srv/ssd/scratch", "/srv/hdd/pool", "/srv/hdd/state")}  # fmt: skip

    # a change of the list restarts the operator; the same list does not
    def checksum(backends: list[dict[str, Any]]) -> str:
        annotations = operator_pod(render(*backends_args(backends)))["metadata"]["annotations"]
        return str(annotations["checksum/backends"])

    assert pod["metadata"]["annotations"]["checksum/backends"] == checksum(TWO_BACKENDS)
    changed = json.loads(json.dumps(TWO_BACKENDS))
    changed[1]["settings"]["controlPort"] = 4
    assert checksum(changed) != checksum(TWO_BACKENDS)


def test_an_existing_secret_becomes_a_volume_and_the_credentials_dir() -> None:
    documents = render(*backends_args(TWO_BACKENDS))
    fast, bulk = sections(documents)
    assert fast.credentials_dir == Path("/etc/lunbridge/backends/fast")
    assert bulk.credentials_dir is None
    pod = operator_pod(documents)
    secrets = [v for v in pod["spec"]["volumes"] if "secret" in v]
    volumes = [v for v in secrets if v["secret"]["secretName"] == "fast-credentials"]
    assert len(volumes) == 1
    assert volumes[0]["secret"]["defaultMode"] == 0o400
    name = volumes[0]["name"]
    mounts = [m for m in pod["spec"]["containers"][0]["volumeMounts"] if m["name"] == name]
    assert mounts == [{"name": name, "mountPath": "/etc/lunbridge/backends/fast", "readOnly": True}]
    assert len(secrets) == 2  # fast's and vCenter's
    assert not [doc for doc in documents if doc["kind"] == "Secret"]  # the admin's Secret, not the chart's
    assert "existingSecret" not in json.dumps(by_name(documents)[BACKENDS])


def test_the_old_storage_tgt_values_make_the_one_tgt_backend() -> None:
    documents = render(*LEGACY, "--set", "storage.tgt.stateFile=/srv/tgt/state.json")
    (config,) = sections(documents)
    assert (config.name, config.type, config.default, config.credentials_dir) == ("tgt", "tgt", True, None)
    tgt = TgtConfig.from_settings(config.settings)
    assert (tgt.portal, tgt.control, tgt.iqn_prefix) == ("192.0.2.20:3260", 3, "iqn.2024-01.io.lunbridge:")
    assert tgt.pools == {"default": Path("/var/lib/lunbridge/pool")}
    assert tgt.state_file == Path("/srv/tgt/state.json")
    pod = operator_pod(documents)
    env = {e["name"]: e.get("value") for e in pod["spec"]["containers"][0]["env"]}
    assert env["LUNBRIDGE_BACKENDS_FILE"] == "/etc/lunbridge/config/backends.yaml"
    assert not [name for name in env if name.startswith("LUNBRIDGE_TGT_")]
    folders = ("/var/run/tgtd", "/var/lib/lunbridge/pool", "/srv/tgt")
    assert host_folders(pod) == {folder: folder for folder in folders}


def test_backends_and_the_old_storage_tgt_portal_together_are_refused() -> None:
    done = helm("template", "lb", str(CHART), *backends_args(TWO_BACKENDS), *LEGACY)
    assert done.returncode != 0
    assert "both backends and storage.tgt.portal are set" in done.stderr, done.stderr


def section(name: str, **fields: Any) -> dict[str, Any]:
    """A tgt backend section with good settings, `fields` replacing or adding keys."""
    good = {"portal": "192.0.2.10:3260", "controlPort": 1, "poolDir": "/srv/pool"}
    return {"name": name, "type": "tgt", "settings": good, **fields}


@pytest.mark.parametrize(
    ("backends", "message"),
    [
        ([section("Fast_1")], "at '/backends/0/name': 'Fast_1' does not match pattern"),
        ([section("a" * 64)], "at '/backends/0/name': maxLength"),
        ([section("fast", type="ceph")], "at '/backends/0/type': value must be 'tgt'"),
        ([section("fast", default="yes")], "at '/backends/0/default'"),
        ([section("fast", password="x")], "at '/backends/0': additional properties 'password' not allowed"),
        ([section("fast", settings={"portal": "192.0.2.10:3260", "poolDir": "/srv/pool"})],
         "at '/backends/0/settings': missing property 'controlPort'"),
        ([section("fast", settings={"portal": "192.0.2.10:3260", "controlPort": 1, "poolDir": "pool"})],
         "at '/backends/0/settings/poolDir'"),
        ([section("fast"), section("fast")], 'backends[1].name "fast" is used twice'),
        ([section("a", default=True), section("b", default=True)], "backends a, b are all marked default"),
    ],
    ids=["name-pattern", "name-too-long", "type", "default-not-boolean", "credential-in-values",
         "settings-incomplete", "relative-pool", "name-twice", "two-defaults"],
)  # fmt: skip
def test_bad_backends_are_refused_naming_the_key(backends: list[dict[str, Any]], message: str) -> None:
    done = helm("template", "lb", str(CHART), *backends_args(backends))
    assert done.returncode != 0
    assert message in done.stderr, done.stderr


def test_the_storage_class_names_a_configured_backend() -> None:
    documents = render(*backends_args(TWO_BACKENDS), "--set", "storageClass.parameters.backend=bulk")
    assert by_name(documents)[("StorageClass", "lunbridge")]["parameters"]["backend"] == "bulk"
    done = helm("template", "lb", str(CHART), *backends_args(TWO_BACKENDS),
                "--set", "storageClass.parameters.backend=nvme")  # fmt: skip
    assert done.returncode != 0
    assert 'storageClass.parameters.backend "nvme" is not one of the backends: fast, bulk' in done.stderr


@pytest.mark.parametrize(
    ("setting", "message"),
    [
        ("operator.logFormat=xml", "value must be one of 'plain', 'json'"),
        ("storage.tgt.portal=no-port", "does not match pattern"),
        ("storageClass.parameters.colour=blue", "colour"),
        ("controller.replicas=-1", "minimum"),
        ("vsphere.password=secret", "set vsphere.url and vsphere.username too"),
        ("snapshots.volumeSnapshotClass.deletionPolicy=Keep",
         "at '/snapshots/volumeSnapshotClass/deletionPolicy': value must be one of 'Delete', 'Retain'"),
    ],
)  # fmt: skip
def test_bad_values_are_refused_with_a_message(setting: str, message: str) -> None:
    done = helm("template", "lb", str(CHART), "--set", setting)
    assert done.returncode != 0
    assert message in done.stderr, done.stderr
