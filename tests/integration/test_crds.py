"""The CRDs as the API server enforces them: wrong manifests are refused with a message a user
understands, shrinking is refused, and `kubectl get`/`explain` show what users need."""

from __future__ import annotations

import json
import uuid

import pytest
import yaml

from tests.lab.lab import LabState, kubectl
from tests.lab.paths import REPO_DIR


def vdisk(spec: dict[str, object]) -> str:
    name = f"t-{uuid.uuid4().hex[:8]}"
    return json.dumps(
        {
            "apiVersion": "lunbridge.io/v1alpha1",
            "kind": "VirtualDisk",
            "metadata": {"name": name},
            "spec": spec,
        }
    )


@pytest.mark.parametrize(
    ("spec", "message"),
    [
        ({"size": 0}, "size must be at least 1Mi"),
        ({"size": "-1Gi"}, "size must be at least 1Mi"),
        ({"size": "65Ti"}, "size must be at most 64Ti"),
        ({"size": "ten gigs"}, "size must be a Kubernetes quantity such as 10Gi"),
        ({"size": "1Gi", "fsType": "ntfs"}, 'spec.fsType: Unsupported value: "ntfs"'),
        ({"size": "1Gi", "nodeName": "Worker_1"}, "nodeName must be a Kubernetes node name"),
        ({"size": "1Gi", "volumeMode": "Raw"}, 'spec.volumeMode: Unsupported value: "Raw"'),
        ({"size": "1Gi", "source": {"snapshot": "a", "virtualDisk": "b"}}, "spec.source: Too many"),
        ({"fsType": "xfs"}, "spec.size: Required value"),
    ],
)
def test_invalid_virtual_disks_are_refused_with_the_schema_message(
    lab: LabState, spec: dict[str, object], message: str
) -> None:
    result = kubectl(lab, "create", "-f", "-", input_text=vdisk(spec))
    assert result.returncode != 0
    assert message in result.stderr


def test_defaults_and_printer_columns(lab: LabState) -> None:
    manifest = vdisk({"size": "2Gi", "nodeName": "dc0-c0-h0-vm0"})
    name = json.loads(manifest)["metadata"]["name"]
    created = kubectl(lab, "create", "-f", "-", "-o", "json", input_text=manifest)
    assert created.returncode == 0, created.stderr
    spec = json.loads(created.stdout)["spec"]
    assert (spec["fsType"], spec["volumeMode"], spec["reclaimPolicy"]) == ("ext4", "Filesystem", "Delete")
    table = kubectl(lab, "get", "vdisk", name).stdout.split("\n")
    assert table[0].split() == ["NAME", "PHASE", "SIZE", "NODE", "NAA", "AGE"]
    assert "2Gi" in table[1]
    assert "dc0-c0-h0-vm0" in table[1]
    kubectl(lab, "delete", "vdisk", name)


def test_size_grows_but_never_shrinks(lab: LabState) -> None:
    manifest = vdisk({"size": "10Gi"})
    name = json.loads(manifest)["metadata"]["name"]
    assert kubectl(lab, "create", "-f", "-", input_text=manifest).returncode == 0
    grow = kubectl(lab, "patch", "vdisk", name, "--type=merge", "-p", '{"spec":{"size":"12Gi"}}')
    assert grow.returncode == 0, grow.stderr
    shrink = kubectl(lab, "patch", "vdisk", name, "--type=merge", "-p", '{"spec":{"size":"11Gi"}}')
    assert shrink.returncode != 0
    assert "size cannot shrink: a LUN can only grow" in shrink.stderr
    immutable = kubectl(lab, "patch", "vdisk", name, "--type=merge", "-p", '{"spec":{"volumeMode":"Block"}}')
    assert immutable.returncode != 0
    assert "volumeMode is immutable" in immutable.stderr
    kubectl(lab, "delete", "vdisk", name)


@pytest.mark.parametrize(
    ("created", "patch", "message"),
    [
        ({}, {"source": {"virtualDisk": "other"}}, "source is immutable: it cannot be added"),
        ({"source": {"snapshot": "s1"}}, {"source": None}, "source is immutable: it cannot be added"),
        ({}, {"pool": "gold"}, "pool is immutable: it cannot be added or removed"),
        ({"pool": "gold"}, {"pool": None}, "pool is immutable: it cannot be added or removed"),
        ({}, {"backend": "san-b"}, "backend is immutable: it cannot be added or removed"),
        ({"backend": "san-a"}, {"backend": None}, "backend is immutable: it cannot be added or removed"),
        ({"volumeMode": "Block"}, {"volumeMode": "Filesystem"}, "volumeMode is immutable"),
    ],
    ids=["add-source", "remove-source", "add-pool", "remove-pool", "add-backend", "remove-backend",
         "change-volume-mode"],
)  # fmt: skip
def test_immutable_fields_can_be_neither_added_nor_removed(
    lab: LabState, created: dict[str, object], patch: dict[str, object], message: str
) -> None:
    manifest = vdisk({"size": "1Gi", **created})
    name = json.loads(manifest)["metadata"]["name"]
    made = kubectl(lab, "create", "-f", "-", input_text=manifest)
    assert made.returncode == 0, made.stderr
    try:
        changed = kubectl(lab, "patch", "vdisk", name, "--type=merge", "-p", json.dumps({"spec": patch}))
        assert changed.returncode != 0, f"the API server took {patch}"
        assert message in changed.stderr
    finally:
        kubectl(lab, "delete", "vdisk", name)


def test_an_empty_node_name_means_detached(lab: LabState) -> None:
    manifest = vdisk({"size": "1Gi", "nodeName": ""})
    name = json.loads(manifest)["metadata"]["name"]
    made = kubectl(lab, "create", "-f", "-", input_text=manifest)
    assert made.returncode == 0, made.stderr
    try:
        attach = kubectl(lab, "patch", "vdisk", name, "--type=merge", "-p", '{"spec":{"nodeName":"node-a"}}')
        assert attach.returncode == 0, attach.stderr
        detach = kubectl(lab, "patch", "vdisk", name, "--type=merge", "-p", '{"spec":{"nodeName":""}}')
        assert detach.returncode == 0, detach.stderr
    finally:
        kubectl(lab, "delete", "vdisk", name)


def test_initiator_group_needs_hosts_or_nodes(lab: LabState) -> None:
    manifest = {"apiVersion": "lunbridge.io/v1alpha1", "kind": "InitiatorGroup",
                "metadata": {"name": f"g-{uuid.uuid4().hex[:8]}"}, "spec": {"protocol": "fcp"}}  # fmt: skip
    result = kubectl(lab, "create", "-f", "-", input_text=json.dumps(manifest))
    assert result.returncode != 0
    assert "set hosts (hypervisor host names) or nodeNames" in result.stderr


@pytest.mark.parametrize(
    ("field", "words"),
    [
        ("vdisk.spec.nodeName", "detaches from the old VM"),
        ("igroup.status.initiators", "as the hypervisor reported"),
    ],
)
def test_kubectl_explain_describes_fields(lab: LabState, field: str, words: str) -> None:
    result = kubectl(lab, "explain", field)
    assert result.returncode == 0, result.stderr
    assert words in " ".join(result.stdout.split())


def test_every_example_passes_the_api_servers_validation(lab: LabState) -> None:
    """`kubectl apply --dry-run=server` of examples/: the CRDs accept what the README shows."""
    examples = sorted((REPO_DIR / "examples").glob("*.yaml"))
    done = kubectl(lab, "apply", "--dry-run=server", *[f"--filename={path}" for path in examples])
    assert done.returncode == 0, done.stderr
    documents = [doc for path in examples for doc in yaml.safe_load_all(path.read_text()) if doc]
    assert done.stdout.count("(server dry run)") == len(documents) >= 6, done.stdout
