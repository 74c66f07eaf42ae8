"""The chart's storage backends, rendered with the real helm (hack/peers/build-tools.sh): the
`backends` list, or one `tgt` from the old storage.tgt.* values, becomes one ConfigMap that the
operator's own parser (lunbridge.storage.factory) accepts, with the folders and Secrets the
backends need (credentials, the CHAP of nodes logging in themselves) mounted into the operator;
the notes name them; bad backends are refused naming the key, and a StorageClass may only name
a configured one."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import pytest

from lunbridge.storage.ontap import OntapConfig
from lunbridge.storage.tgt import TgtConfig
from tests.integration.chart.rendering import (
    BACKENDS,
    CHART,
    LEGACY,
    NAMESPACE,
    TWO_BACKENDS,
    backends_args,
    by_name,
    helm,
    host_folders,
    operator_pod,
    render,
    sections,
)
from tests.lab.lab import LabState

NETAPP: dict[str, Any] = {
    "name": "netapp", "type": "ontap", "existingSecret": "netapp-credentials",
    "settings": {"managementUrl": "https://cluster1.example.com", "svm": "svm_k8s",
                 "caFile": "/etc/lunbridge/backends/netapp/ca.crt", "dataInterfaces": ["192.0.2.30:3260"]},
}  # fmt: skip


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


def test_a_chap_secret_becomes_a_volume_and_the_chap_dir() -> None:
    chapped = [{**TWO_BACKENDS[0], "chapSecret": "node-chap"}, TWO_BACKENDS[1]]
    documents = render(*backends_args(chapped))
    fast, bulk = sections(documents)
    assert (fast.chap_dir, bulk.chap_dir) == (Path("/etc/lunbridge/chap/fast"), None)
    pod = operator_pod(documents)
    [volume] = [v for v in pod["spec"]["volumes"] if v.get("secret", {}).get("secretName") == "node-chap"]
    mounts = [m for m in pod["spec"]["containers"][0]["volumeMounts"] if m["name"] == volume["name"]]
    assert mounts == [{"name": volume["name"], "mountPath": "/etc/lunbridge/chap/fast", "readOnly": True}]
    assert "chapSecret" not in json.dumps(by_name(documents)[BACKENDS])


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
        ([section("fast", type="ceph")], "at '/backends/0/type': value must be one of 'tgt', 'ontap'"),
        ([section("fast", default="yes")], "at '/backends/0/default'"),
        ([section("fast", password="x")], "at '/backends/0': additional properties 'password' not allowed"),
        ([section("fast", settings={"portal": "192.0.2.10:3260", "poolDir": "/srv/pool"})],
         "at '/backends/0/settings': missing property 'controlPort'"),
        ([section("fast", settings={"portal": "192.0.2.10:3260", "controlPort": 1, "poolDir": "pool"})],
         "at '/backends/0/settings/poolDir'"),
        ([section("fast"), section("fast")], 'backends[1].name "fast" is used twice'),
        ([section("a", default=True), section("b", default=True)], "backends a, b are all marked default"),
        ([{k: v for k, v in NETAPP.items() if k != "existingSecret"}],
         "at '/backends/0': missing property 'existingSecret'"),
        ([{**NETAPP, "settings": {**NETAPP["settings"], "managementUrl": "http://c1"}}],
         "at '/backends/0/settings/managementUrl'"),
        ([{**NETAPP, "settings": {**NETAPP["settings"], "flexvolPrefix": "k8s-"}}],
         "at '/backends/0/settings/flexvolPrefix'"),
        ([{**NETAPP, "settings": {**NETAPP["settings"], "password": "x"}}],
         "at '/backends/0/settings': additional properties 'password' not allowed"),
        ([{**NETAPP, "storageClass": {"name": "Bad_Name"}}], "at '/backends/0/storageClass/name'"),
    ],
    ids=["name-pattern", "name-too-long", "type", "default-not-boolean", "credential-in-values",
         "settings-incomplete", "relative-pool", "name-twice", "two-defaults", "ontap-without-secret",
         "ontap-plain-http", "ontap-flexvol-dash", "ontap-password-setting", "storage-class-name"],
)  # fmt: skip
def test_bad_backends_are_refused_naming_the_key(backends: list[dict[str, Any]], message: str) -> None:
    done = helm("template", "lb", str(CHART), *backends_args(backends))
    assert done.returncode != 0
    assert message in done.stderr, done.stderr


def test_tgt_and_ontap_backends_together_each_with_a_storage_class_of_its_own() -> None:
    backends = [{**TWO_BACKENDS[0], "storageClass": {}},
                {**TWO_BACKENDS[1], "storageClass": {"name": "archive", "reclaimPolicy": "Retain",
                                                      "parameters": {"pool": "default", "backend": "fast"}}},
                {**NETAPP, "storageClass": {"isDefault": True, "allowVolumeExpansion": False}}]  # fmt: skip
    documents = render(*backends_args(backends))
    assert [(c.name, c.type) for c in sections(documents)] == [
        ("fast", "tgt"),
        ("bulk", "tgt"),
        ("netapp", "ontap"),
    ]
    netapp = sections(documents)[2]
    assert netapp.credentials_dir == Path("/etc/lunbridge/backends/netapp")
    assert OntapConfig.from_settings(netapp.settings).svm == "svm_k8s"
    classes = {d["metadata"]["name"]: d for d in documents if d["kind"] == "StorageClass"}
    assert set(classes) == {"lunbridge", "lunbridge-fast", "archive", "lunbridge-netapp"}
    assert "backend" not in classes["lunbridge"]["parameters"]  # the default backend
    assert classes["lunbridge-fast"]["parameters"]["backend"] == "fast"
    assert classes["archive"]["parameters"] == {"backend": "bulk", "pool": "default",
                                                "csi.storage.k8s.io/fstype": "ext4"}  # fmt: skip
    assert classes["archive"]["reclaimPolicy"] == "Retain"
    own = classes["lunbridge-netapp"]
    assert own["parameters"]["backend"] == "netapp"
    assert own["allowVolumeExpansion"] is False
    assert own["volumeBindingMode"] == "WaitForFirstConsumer"
    assert own["metadata"]["annotations"]["storageclass.kubernetes.io/is-default-class"] == "true"
    volumes = {v["name"]: v for v in operator_pod(documents)["spec"]["volumes"]}
    assert any(v.get("secret", {}).get("secretName") == "netapp-credentials" for v in volumes.values())


def test_the_storage_class_names_a_configured_backend() -> None:
    documents = render(*backends_args(TWO_BACKENDS), "--set", "storageClass.parameters.backend=bulk")
    assert by_name(documents)[("StorageClass", "lunbridge")]["parameters"]["backend"] == "bulk"
    done = helm("template", "lb", str(CHART), *backends_args(TWO_BACKENDS),
                "--set", "storageClass.parameters.backend=nvme")  # fmt: skip
    assert done.returncode != 0
    assert 'storageClass.parameters.backend "nvme" is not one of the backends: fast, bulk' in done.stderr


def test_chap_for_nodes_that_log_in_themselves_renders_on_backend_and_storage_class() -> None:
    settings = {**TWO_BACKENDS[0]["settings"], "nodePortals": ["10.0.1.5:3260"]}
    with_portals = [{**TWO_BACKENDS[0], "chapSecret": "node-chap", "settings": settings}]
    key = "storageClass.parameters.csi\\.storage\\.k8s\\.io/node-stage-secret"
    secret = ("--set", f"{key}-name=node-chap", "--set", f"{key}-namespace=storage")
    documents = render(*backends_args(with_portals), *secret)
    [fast] = sections(documents)
    assert TgtConfig.from_settings(fast.settings).node_portals == ("10.0.1.5:3260",)
    [storage_class] = [d for d in documents if d["kind"] == "StorageClass"]
    assert storage_class["parameters"]["csi.storage.k8s.io/node-stage-secret-name"] == "node-chap"
    assert storage_class["parameters"]["csi.storage.k8s.io/node-stage-secret-namespace"] == "storage"
