"""The CSI controller's waits against the VirtualDisk's own times on the lab (issue 18, P5):
the real operator, `lunbridge-csi --mode controller` started as the integration tests start it
(`tests.lab.csi.start_plugin`), driven over gRPC from this process.

- CreateVolume, timed around the gRPC call, against its VirtualDisk's own create -> Provisioned;
- ControllerPublishVolume against its VirtualDisk's own spec.nodeName set -> Ready on that node
  (the very predicates the controller waits for: `volume_rules.provisioned`, `attached_to`);
- ControllerUnpublishVolume against nodeName cleared -> detached, for information.

A disk's own times are read by one watch of every VirtualDisk in this process: both ends of
each carry the same delivery delay, while the call's time also holds the controller's own API
calls before the create or patch (a read, the Node lookup) and the gRPC round trip. One round
warms up first (the gRPC channel, the controller's Node index) and is not counted; each disk is
deleted before the next, so every round sees the same number of LUNs.
"""

from __future__ import annotations

import statistics
import threading
import time
import uuid
from collections.abc import Callable, Mapping
from pathlib import Path
from typing import Any

import grpc
import kubernetes

from lunbridge.models import VirtualDisk
from lunbridge_csi._proto import csi_pb2, csi_pb2_grpc
from lunbridge_csi.volume_rules import attached_to, detached, provisioned
from tests.bench.kubewatch import GROUP, PLURAL, VERSION, VirtualDisks
from tests.lab import csi, lab, operator, procs
from tests.lab.lab import LabState
from tests.lab.vcsim import load_inventory

GOAL = 1.1  # issue 18, P5
NAME = "csi-bench-controller"
watch: Any = kubernetes.watch
MOUNT = csi_pb2.VolumeCapability(
    mount=csi_pb2.VolumeCapability.MountVolume(fs_type="ext4"),
    access_mode=csi_pb2.VolumeCapability.AccessMode(
        mode=csi_pb2.VolumeCapability.AccessMode.SINGLE_NODE_WRITER
    ),
)


class Timeline:
    """`time.monotonic()` and the object of every watch event of every VirtualDisk, by name."""

    def __init__(self, disks: VirtualDisks) -> None:
        self.disks = disks
        self.seen: dict[str, list[tuple[float, VirtualDisk]]] = {}
        self._stop = threading.Event()
        self._watch: Any = None
        self._thread: threading.Thread | None = None

    def start(self) -> None:
        listed = self.disks.api.list_cluster_custom_object(GROUP, VERSION, PLURAL)
        since = listed["metadata"]["resourceVersion"]
        self._thread = threading.Thread(target=self._follow, args=(since,), daemon=True)
        self._thread.start()

    def stop(self) -> None:
        self._stop.set()
        if self._watch is not None:
            self._watch.stop()
        if self._thread is not None:
            self._thread.join(10)

    def _follow(self, since: str) -> None:
        while not self._stop.is_set():
            self._watch = watch.Watch()
            stream = self._watch.stream(
                self.disks.api.list_cluster_custom_object, GROUP, VERSION, PLURAL,
                resource_version=since, timeout_seconds=300,
            )  # fmt: skip
            try:
                for event in stream:
                    at, body = time.monotonic(), event["raw_object"]
                    since = body["metadata"]["resourceVersion"]
                    if event["type"] in ("ADDED", "MODIFIED"):
                        disk = VirtualDisk.from_dict(body)
                        self.seen.setdefault(disk.name, []).append((at, disk))
            except Exception:
                if not self._stop.is_set():
                    raise

    def first(
        self, name: str, holds: Callable[[VirtualDisk], bool], after: float = 0.0, wait: float = 30
    ) -> float:
        """When the first version of `name` seen at or after `after` for which `holds` was seen."""
        deadline = time.monotonic() + wait
        while time.monotonic() < deadline:
            for at, disk in list(self.seen.get(name, [])):
                if at >= after and holds(disk):
                    return at
            time.sleep(0.01)
        raise TimeoutError(f"VirtualDisk {name}: the awaited version was not seen within {wait:.0f}s")


def _timed(call: Callable[..., Any], request: Any) -> tuple[float, float]:
    """(when the call began, how long it took), both by `time.monotonic()`."""
    began = time.monotonic()
    call(request, timeout=180)
    return began, time.monotonic() - began


def _round(stub: Any, timeline: Timeline, node: str, node_id: str) -> dict[str, tuple[float, float]]:
    """One volume created, published, unpublished and deleted: per call, (its time, the disk's own)."""
    name = f"pvc-bench-{uuid.uuid4().hex[:8]}"
    created = csi_pb2.CreateVolumeRequest(
        name=name, volume_capabilities=[MOUNT], capacity_range=csi_pb2.CapacityRange(required_bytes=64 << 20)
    )
    begun, took = _timed(stub.CreateVolume, created)
    added = timeline.first(name, lambda _: True, begun)
    create = (took, timeline.first(name, provisioned, begun) - added)
    published = csi_pb2.ControllerPublishVolumeRequest(
        volume_id=name, node_id=node_id, volume_capability=MOUNT
    )
    begun, took = _timed(stub.ControllerPublishVolume, published)
    set_at = timeline.first(name, lambda d: d.spec.node_name == node, begun)
    publish = (took, timeline.first(name, attached_to(node), set_at) - set_at)
    unpublished = csi_pb2.ControllerUnpublishVolumeRequest(volume_id=name, node_id=node_id)
    begun, took = _timed(stub.ControllerUnpublishVolume, unpublished)
    cleared_at = timeline.first(name, lambda d: d.spec.node_name is None, begun)
    unpublish = (took, timeline.first(name, detached, cleared_at) - cleared_at)
    stub.DeleteVolume(csi_pb2.DeleteVolumeRequest(volume_id=name), timeout=180)
    return {
        "CreateVolume": create,
        "ControllerPublishVolume": publish,
        "ControllerUnpublishVolume": unpublish,
    }


OWN = {
    "CreateVolume": ("its VirtualDisk's own create -> Provisioned", True),
    "ControllerPublishVolume": ("nodeName set -> Ready", True),
    "ControllerUnpublishVolume": ("nodeName cleared -> detached", False),
}


def measure(state: LabState, rounds: int, label: str = "P5", env: Mapping[str, str] | None = None) -> None:
    """Start a controller (with `env` added to the lab's), time `rounds` volumes through it after
    one warm-up round, print one line per call, stop it."""
    lab_dir = Path(state.lab_dir)
    vm = load_inventory(lab_dir).vms[0]
    node, node_id = lab.node_name(vm.name), f"vsphere://{vm.bios_uuid}"
    address = f"127.0.0.1:{procs.free_port()}"
    csi.start_plugin(
        {**state.env(), **(env or {})}, lab_dir, f"tcp://{address}", "--mode", "controller", name=NAME
    )
    timeline = Timeline(VirtualDisks(state))
    timeline.start()
    try:
        with grpc.insecure_channel(address) as channel:
            stub = csi_pb2_grpc.ControllerStub(channel)  # type: ignore[no-untyped-call]
            _round(stub, timeline, node, node_id)
            samples = [_round(stub, timeline, node, node_id) for _ in range(rounds)]
    finally:
        timeline.stop()
        procs.stop(lab_dir, NAME, timeout=15)
    for call, (own, judged) in OWN.items():
        took = statistics.median(s[call][0] for s in samples)
        itself = statistics.median(s[call][1] for s in samples)
        ratio = statistics.median(s[call][0] / s[call][1] for s in samples)
        goal = f" (goal <= {GOAL}x)" if judged else ""
        print(f"({label}) {call}, median of {rounds}: {took:.3f}s; {own}: {itself:.3f}s; "
              f"ratio {ratio:.2f}x{goal}")  # fmt: skip


def run(lab_dir: Path, rounds: int = 5) -> None:
    state = lab.up(lab_dir)
    try:
        operator.start(state)
        measure(state, rounds)
    finally:
        operator.stop(state)
        lab.down(lab_dir)
