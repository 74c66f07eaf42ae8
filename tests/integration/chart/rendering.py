"""What both chart test files share: the chart, the values files and the backends they render
with, helm itself, and readers of a render (documents by kind and name, the operator's pod, its
backends ConfigMap as the operator parses it, its host folders)."""

from __future__ import annotations

import json
import subprocess
from pathlib import Path
from typing import Any

import yaml

from lunbridge.storage.factory import BackendConfig, check, parse_backends
from tests.lab import paths

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
