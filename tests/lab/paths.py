"""Where the lab keeps its binaries, caches and runtime state."""

from __future__ import annotations

import os
from pathlib import Path

REPO_DIR = Path(__file__).resolve().parents[2]
HACK_DIR = REPO_DIR / "hack"


def cache_dir() -> Path:
    """The peer cache; the same folder hack/peers/lib.sh uses."""
    if "LUNBRIDGE_CACHE" in os.environ:
        return Path(os.environ["LUNBRIDGE_CACHE"])
    xdg = os.environ.get("XDG_CACHE_HOME") or str(Path.home() / ".cache")
    return Path(xdg) / "lunbridge"


def bin_dir() -> Path:
    return cache_dir() / "bin"


def snapshot_crds_dir() -> Path:
    """external-snapshotter's snapshot CRDs (one YAML file each), copied by hack/peers/build-tools.sh."""
    return cache_dir() / "snapshot-crds"


def default_lab_dir() -> Path:
    return Path(os.environ.get("LUNBRIDGE_LAB_DIR", str(REPO_DIR / ".lab")))


def versions() -> dict[str, str]:
    """hack/versions.env as a dict."""
    result: dict[str, str] = {}
    for line in (HACK_DIR / "versions.env").read_text().splitlines():
        line = line.strip()
        if line and not line.startswith("#") and "=" in line:
            key, value = line.split("=", 1)
            result[key] = value
    return result
