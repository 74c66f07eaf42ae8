"""Snapshot and restore times on the lab (the tgt backend on its XFS reflink pool), for LUNs of
1 GiB and 10 GiB filled with data (written straight into the backing file, 1 MiB at a time, so
the file has few extents, as a LUN written sequentially has):

- cut: DiskSnapshot applied -> readyToUse (the operator's whole path), and the backend's own
  create_snapshot on the same LUN (its floor);
- restore: VirtualDisk with spec.source.snapshot applied -> Ready (not attached), and the
  backend's clone_lun (its floor).

A cut is a reflink clone, so its cost follows the number of extents, not the size.
"""

from __future__ import annotations

import asyncio
import json
import os
import time
import uuid
from pathlib import Path
from typing import Any

from lunbridge.api import API_VERSION
from lunbridge.storage.tgt import TgtBackend, TgtConfig
from tests.bench.kubewatch import apply
from tests.lab import lab, operator
from tests.lab.lab import LabState, kubectl

SIZES = {"1 GiB": 1 << 30, "10 GiB": 10 << 30}
CHUNK = 1 << 20


def _get(state: LabState, kind: str, name: str) -> dict[str, Any]:
    result = kubectl(state, "get", kind, name, "-o", "json")
    found: dict[str, Any] = json.loads(result.stdout) if result.returncode == 0 else {}
    return found


def _wait(
    state: LabState, kind: str, name: str, done: Any, timeout: float = 600
) -> tuple[float, dict[str, Any]]:
    started = time.monotonic()
    while time.monotonic() - started < timeout:
        found = _get(state, kind, name)
        if done(found.get("status") or {}):
            return time.monotonic() - started, found
        time.sleep(0.05)
    raise TimeoutError(f"{kind} {name} not done within {timeout}s")


def _fill(path: Path, size: int) -> None:
    block = os.urandom(CHUNK)
    with path.open("r+b") as handle:
        for _ in range(size // CHUNK):
            handle.write(block)
        handle.flush()
        os.fsync(handle.fileno())


def _floor(state: LabState, lun: str) -> tuple[float, float]:
    """The backend's own create_snapshot and clone_lun of `lun`, timed (and removed again)."""
    env = state.env()
    config = TgtConfig.from_settings({"portal": env["LUNBRIDGE_TGT_PORTAL"], "controlPort": state.tgt_control,
                                      "poolDir": env["LUNBRIDGE_TGT_POOL_DIR"],
                                      "stateFile": env["LUNBRIDGE_TGT_STATE_FILE"]})  # fmt: skip

    async def measure() -> tuple[float, float]:
        backend = TgtBackend(config)
        name = f"bench-{uuid.uuid4().hex[:8]}"
        try:
            started = time.monotonic()
            await backend.create_snapshot(lun, name)
            cut = time.monotonic() - started
            started = time.monotonic()
            await backend.clone_lun(name, f"{name}-clone")
            clone = time.monotonic() - started
            await backend.delete_lun(f"{name}-clone")
            await backend.delete_snapshot(name)
            return cut, clone
        finally:
            await backend.close()

    return asyncio.run(measure())


def measure(state: LabState) -> None:
    for label, size in SIZES.items():
        disk = f"bench-snap-{uuid.uuid4().hex[:6]}"
        apply(state, [{"apiVersion": API_VERSION, "kind": "VirtualDisk", "metadata": {"name": disk},
                        "spec": {"size": str(size)}}])  # fmt: skip
        _, made = _wait(state, "vdisk", disk, lambda s: s.get("phase") == "Ready")
        lun = made["status"]["lun"]["name"]
        started = time.monotonic()
        _fill(Path(state.env()["LUNBRIDGE_TGT_POOL_DIR"]) / "luns" / f"{lun}.img", size)
        filled = time.monotonic() - started
        snap = f"{disk}-snap"
        apply(state, [{"apiVersion": API_VERSION, "kind": "DiskSnapshot", "metadata": {"name": snap},
                        "spec": {"source": {"virtualDisk": disk}}}])  # fmt: skip
        cut, _ = _wait(state, "dsnap", snap, lambda s: s.get("readyToUse"))
        restored = f"{disk}-restored"
        apply(state, [{"apiVersion": API_VERSION, "kind": "VirtualDisk", "metadata": {"name": restored},
                        "spec": {"size": str(size), "source": {"snapshot": snap}}}])  # fmt: skip
        restore, _ = _wait(state, "vdisk", restored, lambda s: s.get("phase") == "Ready")
        floor_cut, floor_clone = _floor(state, lun)
        print(f"{label} LUN (filled in {filled:.1f}s): snapshot apply->readyToUse {cut:.3f}s "
              f"(backend alone {floor_cut:.3f}s); restore apply->Ready {restore:.3f}s "
              f"(backend clone alone {floor_clone:.3f}s)")  # fmt: skip
        kubectl(state, "delete", "vdisk", restored, disk, "--timeout=300s")
        kubectl(state, "delete", "dsnap", snap, "--timeout=300s")


def run(lab_dir: Path) -> None:
    state = lab.up(lab_dir)
    try:
        operator.start(state)
        measure(state)
    finally:
        operator.stop(state)
        lab.down(lab_dir)
