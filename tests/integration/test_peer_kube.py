"""The lab's Kubernetes control plane is real: a CRD's schema is enforced by the API server,
and the controller-manager runs its controllers."""

from __future__ import annotations

import json
import time
import uuid
from pathlib import Path

import pytest

from tests.lab import vcsim
from tests.lab.lab import LabState, kubectl
from tests.lab.paths import versions

PROBE_CRD = {
    "apiVersion": "apiextensions.k8s.io/v1",
    "kind": "CustomResourceDefinition",
    "metadata": {"name": "labprobes.lab.lunbridge.io"},
    "spec": {
        "group": "lab.lunbridge.io",
        "scope": "Cluster",
        "names": {"plural": "labprobes", "singular": "labprobe", "kind": "LabProbe"},
        "versions": [
            {
                "name": "v1",
                "served": True,
                "storage": True,
                "schema": {
                    "openAPIV3Schema": {
                        "type": "object",
                        "properties": {
                            "spec": {
                                "type": "object",
                                "required": ["sizeGiB"],
                                "properties": {
                                    "sizeGiB": {"type": "integer", "minimum": 1, "maximum": 16},
                                    "fsType": {"type": "string", "enum": ["ext4", "xfs"]},
                                },
                                "x-kubernetes-validations": [
                                    {"rule": "self.sizeGiB != 13", "message": "13 GiB is unlucky"}
                                ],
                            }
                        },
                    }
                },
            }
        ],
    },
}


@pytest.fixture(scope="module")
def probe_crd(lab: LabState) -> None:
    result = kubectl(lab, "apply", "-f", "-", input_text=json.dumps(PROBE_CRD))
    assert result.returncode == 0, result.stderr
    waited = kubectl(
        lab, "wait", "--for=condition=Established", "--timeout=30s", "crd/labprobes.lab.lunbridge.io"
    )
    assert waited.returncode == 0, waited.stderr


def _probe(spec: dict[str, object]) -> str:
    return json.dumps(
        {
            "apiVersion": "lab.lunbridge.io/v1",
            "kind": "LabProbe",
            "metadata": {"name": f"probe-{uuid.uuid4().hex[:8]}"},
            "spec": spec,
        }
    )


@pytest.mark.usefixtures("probe_crd")
class TestSchemaEnforced:
    def test_valid_object_is_stored(self, lab: LabState) -> None:
        result = kubectl(
            lab,
            "create",
            "-f",
            "-",
            "-o",
            "jsonpath={.spec.fsType}",
            input_text=_probe({"sizeGiB": 4, "fsType": "xfs"}),
        )
        assert result.returncode == 0, result.stderr
        assert result.stdout == "xfs"

    def test_enum_violation_is_rejected_with_schema_message(self, lab: LabState) -> None:
        result = kubectl(lab, "create", "-f", "-", input_text=_probe({"sizeGiB": 4, "fsType": "ntfs"}))
        assert result.returncode != 0
        assert 'Unsupported value: "ntfs"' in result.stderr
        assert '"ext4", "xfs"' in result.stderr

    def test_range_violation_is_rejected(self, lab: LabState) -> None:
        result = kubectl(lab, "create", "-f", "-", input_text=_probe({"sizeGiB": 99}))
        assert result.returncode != 0
        assert "spec.sizeGiB" in result.stderr
        assert "less than or equal to 16" in result.stderr

    def test_cel_rule_message_reaches_the_user(self, lab: LabState) -> None:
        result = kubectl(lab, "create", "-f", "-", input_text=_probe({"sizeGiB": 13}))
        assert result.returncode != 0
        assert "13 GiB is unlucky" in result.stderr


def test_server_reports_pinned_version(lab: LabState) -> None:
    result = kubectl(lab, "version", "-o", "json")
    assert result.returncode == 0, result.stderr
    assert json.loads(result.stdout)["serverVersion"]["gitVersion"] == versions()["K8S_VERSION"]


def test_controller_manager_creates_default_service_account(lab: LabState) -> None:
    namespace = f"probe-{uuid.uuid4().hex[:8]}"
    assert kubectl(lab, "create", "namespace", namespace).returncode == 0
    deadline = time.monotonic() + 60
    while time.monotonic() < deadline:
        if kubectl(lab, "get", "serviceaccount", "default", "-n", namespace).returncode == 0:
            break
        time.sleep(0.5)
    else:
        pytest.fail("kube-controller-manager did not create the default ServiceAccount within 60s")
    kubectl(lab, "delete", "namespace", namespace, "--wait=false")


def test_one_node_per_vm_with_vsphere_provider_id(lab: LabState) -> None:
    result = kubectl(lab, "get", "nodes", "-o", "json")
    assert result.returncode == 0, result.stderr
    items = json.loads(result.stdout)["items"]
    nodes = {item["metadata"]["name"]: item["spec"]["providerID"] for item in items}
    provider_ids = sorted(p for p in nodes.values() if p.startswith("vsphere://"))
    inventory = vcsim.load_inventory(Path(lab.lab_dir))
    assert provider_ids == sorted(f"vsphere://{vm.bios_uuid}" for vm in inventory.vms)
    assert len(provider_ids) >= 4
    # and the KVM guest booted through the lab's libvirtd
    assert nodes[lab.guest_node] == f"libvirt://{lab.guest_uuid}"
    assert len(nodes) == len(provider_ids) + 1
