"""The CSI controller's waits against the VirtualDisk's own times on the lab (issue 18, P5):
the real operator, `lunbridge-csi --mode controller` started as the integration tests start it
(`tests.lab.csi.start_plugin`), driven over gRPC from this process.

Each round takes two disks through the same steps, one by the CSI calls and one as an
administrator would with the API alone, each timed from the start of its call or write to the
version it waits for:
- CreateVolume against the VirtualDisk's own apply -> Provisioned: a POST of the same object the
  controller creates, then the Provisioned version;
- ControllerPublishVolume against spec.nodeName set -> Ready on that node: a merge PATCH, then the
  version the controller waits for (`volume_rules.attached_to`);
- ControllerUnpublishVolume against nodeName cleared -> detached, for information.

The direct disk's versions are read by one watch of every VirtualDisk that this process keeps
open from the start (the best a script can do: no watch to open after the write), and the
timeline also gives the disk's own time from the event of the write on, printed for information:
that one leaves out the write itself. One round warms up first (the gRPC channel, the
controller's Node index and VirtualDisk feed) and is not counted; each disk is deleted before
the next, so every round sees the same number of LUNs.
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

from lunbridge.api import FINALIZER
from lunbridge.models import ObjectMeta, VirtualDisk, VirtualDiskSpec, VolumeMode
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


Sample = dict[str, tuple[float, float, float]]  # call -> (its time, the direct time, from the event)


def _direct(timeline: Timeline, node: str) -> dict[str, float]:
    """One disk created, published, unpublished and deleted through the API alone: each step's
    time from the start of its write to the version awaited."""
    api, name = timeline.disks.api, f"pvc-bench-{uuid.uuid4().hex[:8]}"
    body = VirtualDisk(
        metadata=ObjectMeta(name=name, finalizers=[FINALIZER]),
        spec=VirtualDiskSpec(size="64Mi", volume_mode=VolumeMode.FILESYSTEM, fs_type="ext4"),
    ).body()  # what CreateVolume creates for MOUNT and 64 MiB
    began = time.monotonic()
    api.create_cluster_custom_object(GROUP, VERSION, PLURAL, body)
    create = timeline.first(name, provisioned, began) - began
    began = time.monotonic()
    api.patch_cluster_custom_object(GROUP, VERSION, PLURAL, name, {"spec": {"nodeName": node}})
    publish = timeline.first(name, attached_to(node), began) - began
    began = time.monotonic()
    api.patch_cluster_custom_object(GROUP, VERSION, PLURAL, name, {"spec": {"nodeName": None}})
    unpublish = timeline.first(name, lambda d: d.spec.node_name is None and detached(d), began) - began
    api.delete_cluster_custom_object(GROUP, VERSION, PLURAL, name)
    _gone(api, name)
    return {
        "CreateVolume": create,
        "ControllerPublishVolume": publish,
        "ControllerUnpublishVolume": unpublish,
    }


def _gone(api: Any, name: str, wait: float = 60) -> None:
    """Wait (untimed) until the API server no longer has VirtualDisk `name`."""
    deadline = time.monotonic() + wait
    while time.monotonic() < deadline:
        try:
            api.get_cluster_custom_object(GROUP, VERSION, PLURAL, name)
        except kubernetes.client.ApiException as exc:
            if exc.status == 404:
                return
            raise
        time.sleep(0.05)
    raise TimeoutError(f"VirtualDisk {name} was not deleted within {wait:.0f}s")


def _round(stub: Any, timeline: Timeline, node: str, node_id: str) -> Sample:
    """One volume created, published, unpublished and deleted through CSI, and one disk the
    same way directly: per call, (its time, the direct time, the disk's time from its event)."""
    direct = _direct(timeline, node)
    name = f"pvc-bench-{uuid.uuid4().hex[:8]}"
    created = csi_pb2.CreateVolumeRequest(
        name=name, volume_capabilities=[MOUNT], capacity_range=csi_pb2.CapacityRange(required_bytes=64 << 20)
    )
    begun, took = _timed(stub.CreateVolume, created)
    added = timeline.first(name, lambda _: True, begun)
    create = (took, direct["CreateVolume"], timeline.first(name, provisioned, begun) - added)
    published = csi_pb2.ControllerPublishVolumeRequest(
        volume_id=name, node_id=node_id, volume_capability=MOUNT
    )
    begun, took = _timed(stub.ControllerPublishVolume, published)
    set_at = timeline.first(name, lambda d: d.spec.node_name == node, begun)
    publish = (
        took, direct["ControllerPublishVolume"], timeline.first(name, attached_to(node), set_at) - set_at
    )  # fmt: skip
    unpublished = csi_pb2.ControllerUnpublishVolumeRequest(volume_id=name, node_id=node_id)
    begun, took = _timed(stub.ControllerUnpublishVolume, unpublished)
    cleared_at = timeline.first(name, lambda d: d.spec.node_name is None, begun)
    unpublish = (
        took, direct["ControllerUnpublishVolume"], timeline.first(name, detached, cleared_at) - cleared_at
    )  # fmt: skip
    stub.DeleteVolume(csi_pb2.DeleteVolumeRequest(volume_id=name), timeout=180)
    return {
        "CreateVolume": create,
        "ControllerPublishVolume": publish,
        "ControllerUnpublishVolume": unpublish,
    }


OWN = {
    "CreateVolume": ("the VirtualDisk's own apply -> Provisioned", True),
    "ControllerPublishVolume": ("its nodeName set -> Ready", True),
    "ControllerUnpublishVolume": ("its nodeName cleared -> detached", False),
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
            asked = csi_pb2.ControllerGetCapabilitiesRequest()
            asking = (_timed(stub.ControllerGetCapabilities, asked)[1] for _ in range(50))
            round_trip = statistics.median(asking)
    finally:
        timeline.stop()
        procs.stop(lab_dir, NAME, timeout=15)
    for call, (own, judged) in OWN.items():
        took, itself, from_event = (statistics.median(s[call][i] for s in samples) for i in range(3))
        ratio = statistics.median(s[call][0] / s[call][1] for s in samples)
        goal = f" (goal <= {GOAL}x)" if judged else ""
        print(f"({label}) {call}, median of {rounds}: {took:.3f}s; {own}: {itself:.3f}s; "
              f"ratio {ratio:.2f}x{goal}; from the write's event on: {from_event:.3f}s")  # fmt: skip
    print(f"({label}) a call that asks nothing of the API (ControllerGetCapabilities), median of 50: "
          f"{round_trip * 1000:.1f} ms")  # fmt: skip


def run(lab_dir: Path, rounds: int = 5) -> None:
    state = lab.up(lab_dir)
    try:
        operator.start(state)
        measure(state, rounds)
    finally:
        operator.stop(state)
        lab.down(lab_dir)
