"""Every manifest in examples/ reads as the typed model of its kind (a renamed field or a bad
value in an example fails here; tests/integration/test_crds.py dry-runs them on the API server)."""

from __future__ import annotations

from typing import Any

import pytest
import yaml

from lunbridge.models import DiskGroupSnapshot, DiskRestore, DiskSnapshot, DiskVerification, VirtualDisk
from lunbridge.models.meta import KubeObject
from tests.lab.paths import REPO_DIR

MODELS: dict[str, type[KubeObject]] = {
    "VirtualDisk": VirtualDisk,
    "DiskSnapshot": DiskSnapshot,
    "DiskRestore": DiskRestore,
    "DiskGroupSnapshot": DiskGroupSnapshot,
    "DiskVerification": DiskVerification,
}


def manifests() -> list[tuple[str, dict[str, Any]]]:
    found = []
    for path in sorted((REPO_DIR / "examples").glob("*.yaml")):
        for doc in yaml.safe_load_all(path.read_text()):
            if doc:
                found.append((f"{path.name}:{doc['kind']}/{doc['metadata']['name']}", doc))
    return found


@pytest.mark.parametrize(("where", "doc"), manifests(), ids=[w for w, _ in manifests()])
def test_every_example_reads_as_its_model(where: str, doc: dict[str, Any]) -> None:
    model = MODELS[doc["kind"]]
    assert model.from_dict(doc).name == doc["metadata"]["name"], where
