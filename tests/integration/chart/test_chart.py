"""The Helm chart, checked with the real helm (hack/peers/build-tools.sh) and the lab's real
kube-apiserver: it lints; it renders with the default values and with a values file that sets
every option; both renders pass the API server's own validation (`kubectl apply
--dry-run=server`, with the chart's CRDs installed); its RBAC names every verb and resource;
its values schema turns bad values away with a message; its CRDs are crds/'s."""

from __future__ import annotations

import json
import subprocess
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
import yaml

from tests.lab import paths
from tests.lab.lab import LabState, kubectl

CHART = paths.REPO_DIR / "charts" / "lunbridge"
ALL_VALUES = Path(__file__).with_name("values-all.yaml")
NAMESPACE = "lunbridge-chart-test"


def helm(*args: str) -> subprocess.CompletedProcess[str]:
    return subprocess.run([str(paths.bin_dir() / "helm"), *args], capture_output=True, text=True, check=False)


def render(*args: str) -> list[dict[str, Any]]:
    done = helm("template", "lb", str(CHART), "--namespace", NAMESPACE, *args)
    assert done.returncode == 0, done.stderr
    return [doc for doc in yaml.safe_load_all(done.stdout) if doc]


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


@pytest.mark.parametrize("values", [[], ["--values", str(ALL_VALUES)]], ids=["defaults", "every-option"])
def test_the_render_passes_the_api_servers_validation(
    lab: LabState, namespace: str, values: list[str]
) -> None:
    documents = render(*values)
    kinds = {doc["kind"] for doc in documents}
    workloads = {"CSIDriver", "DaemonSet", "Deployment", "ServiceAccount", "StorageClass"}
    rbac = {"ClusterRole", "ClusterRoleBinding", "Role", "RoleBinding"}
    assert kinds == workloads | rbac | ({"Secret"} if values else set())
    manifest = json.dumps({"apiVersion": "v1", "kind": "List", "items": documents})
    done = kubectl(lab, "apply", "--dry-run=server", "--filename=-", input_text=manifest)
    assert done.returncode == 0, done.stderr
    assert done.stdout.count("(server dry run)") == len(documents)


def test_every_option_lands_where_it_should() -> None:
    documents = {(doc["kind"], doc["metadata"]["name"]): doc for doc in render("--values", str(ALL_VALUES))}
    operator = documents[("Deployment", "lb-lunbridge-operator")]["spec"]
    env = {e["name"]: e.get("value") for e in operator["template"]["spec"]["containers"][0]["env"]}
    assert env["LUNBRIDGE_TGT_PORTAL"] == "192.0.2.10:3260"
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
    assert storage_class["parameters"] == {"csi.storage.k8s.io/fstype": "xfs", "backend": "default",
                                           "pool": "default", "scope": "cluster"}  # fmt: skip
    assert storage_class["metadata"]["annotations"]["storageclass.kubernetes.io/is-default-class"] == "true"
    controller = documents[("Deployment", "lb-lunbridge-controller")]["spec"]["template"]["spec"]
    names = [c["name"] for c in controller["containers"]]
    assert names == ["csi-plugin", "csi-provisioner", "csi-attacher", "csi-resizer", "liveness-probe"]
    assert "--leader-election=true" in controller["containers"][1]["args"]  # 2 replicas
    assert "--capacity-bytes=1099511627776" in controller["containers"][0]["args"]


def test_rbac_names_every_verb_and_resource() -> None:
    for values in ([], ["--values", str(ALL_VALUES)]):
        for doc in render(*values):
            for rule in doc.get("rules", []) if doc["kind"] in ("ClusterRole", "Role") else []:
                where = (doc["metadata"]["name"], rule)
                assert "*" not in rule["verbs"], where
                assert "*" not in rule["resources"], where


def test_the_default_render_holds_no_secret_and_notes_say_what_is_missing(lab: LabState) -> None:
    assert not [doc for doc in render() if doc["kind"] == "Secret"]
    done = helm("install", "lb", str(CHART), "--dry-run=client", "--namespace", NAMESPACE,
                "--kubeconfig", str(lab.kubeconfig))  # fmt: skip
    assert done.returncode == 0, done.stderr
    assert "create secret generic lb-lunbridge-vsphere" in done.stdout
    assert "storage.tgt.portal" in done.stdout


@pytest.mark.parametrize(
    ("setting", "message"),
    [
        ("operator.logFormat=xml", "value must be one of 'plain', 'json'"),
        ("storage.tgt.portal=no-port", "does not match pattern"),
        ("storageClass.parameters.colour=blue", "colour"),
        ("controller.replicas=-1", "minimum"),
        ("vsphere.password=secret", "set vsphere.url and vsphere.username too"),
    ],
)
def test_bad_values_are_refused_with_a_message(setting: str, message: str) -> None:
    done = helm("template", "lb", str(CHART), "--set", setting)
    assert done.returncode != 0
    assert message in done.stderr, done.stderr
