"""The chart installs exactly the CRDs the operator is tested with (crds/)."""

from __future__ import annotations

from tests.lab.paths import REPO_DIR


def test_the_charts_crds_are_identical_to_crds() -> None:
    ours = {p.name: p.read_bytes() for p in (REPO_DIR / "crds").glob("*.yaml")}
    charts = {p.name: p.read_bytes() for p in (REPO_DIR / "charts" / "lunbridge" / "crds").glob("*.yaml")}
    assert ours
    assert charts == ours
