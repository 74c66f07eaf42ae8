"""The CSI node service's speed in the lab's KVM guest (TCG: absolute times are slow, ratios
are what to read), through the whole chain (`make lab-up LAB_SERVICES=1`'s services).

(c) NodeStage of a blank disk against a plain `mkfs` + `mount` of another blank disk of the
    same size, both timed the same way inside the guest (perf.md, "NodeStage timed the same way
    on both sides"):
    - lunbridge's side is NodeStage's own duration, as the node plugin logs it ("NodeStageVolume
      ID took Xs (disk …, probe …, mkfs …, mount …)"): from the targeted rescan of the
      published address to the mount, the NAA check and the blank probe included;
    - the plain side is the same targeted rescan and wait for the block device (5 ms looks),
      then the very mkfs command lunbridge runs (`guest.filesystem.mkfs_argv`: `-E nodiscard`),
      mkdir and `mount`, timed with one clock in one process;
    - the gRPC call's own cost (this machine → slirp → the guest: the host's wall time of the
      call less the server's time) is reported apart, and so is NodeStage of the same disk
      again (formatted: no mkfs). The two sides alternate which goes first from round to round,
      and the figure judged against the goal is the median of each round's ratio (its two sides
      ran back to back, so the load of a shared machine moves it least), beside the ratio of
      the medians.
(d) A targeted rescan (one channel/target/LUN, what NodeStage does) against a wildcard rescan
    ("- - -") of the same SCSI host, both until the same disk is there, timed inside the guest.
"""

from __future__ import annotations

import json
import re
import shlex
import statistics
import sys
import time
import uuid
from collections.abc import Sequence
from pathlib import Path
from typing import Any

import grpc

from lunbridge_csi._proto import csi_pb2, csi_pb2_grpc
from lunbridge_csi.guest import filesystem
from tests.lab import csi
from tests.lab.lab import LabState
from tests.lab.libvirt import LibvirtGuest, connect_guest

GOAL = 1.1  # issue 18, P3: NodeStage at most 1.1 times mkfs + mount
SIZE = 256 << 20
MOUNT = csi_pb2.VolumeCapability(
    mount=csi_pb2.VolumeCapability.MountVolume(fs_type="ext4"),
    access_mode=csi_pb2.VolumeCapability.AccessMode(
        mode=csi_pb2.VolumeCapability.AccessMode.SINGLE_NODE_WRITER
    ),
)
# "NodeStageVolume ID took 0.812s (disk 0.031s, probe 0.004s, mkfs 0.602s, mount 0.170s)"
TOOK = re.compile(r"took (?P<took>[0-9.]+)s(?: \((?P<phases>[^)]*)\))?")
PHASE = re.compile(r"(?P<name>[a-z]+) (?P<seconds>[0-9.]+)s")

# Runs in the guest: find the disk's SCSI host by the published PCI slot, then time one way
# of making the disk appear ("plain": and make its filesystem and mount it, as lunbridge does;
# "targeted"/"wildcard": the two kinds of scan); prints the phases in seconds as JSON.
IN_GUEST = r"""
import json, os, subprocess, sys, time
from pathlib import Path
from lunbridge_csi.guest import filesystem, scsi
ctx, what, folder = json.loads(sys.argv[1]), sys.argv[2], sys.argv[3]
root = Path("/")
host = scsi.host_for_pci_slot(root, int(ctx["pciSlot"]))
address = scsi.Address.parse(ctx["guestAddress"])
hctl = scsi.hctl(host, address)
scan = root / scsi.SCSI_HOSTS / host / "scan"
def wait_disk():
    while scsi.block_device_at(root, hctl) is None:
        time.sleep(0.005)
    return scsi.block_device_at(root, hctl)
times = {}
started = time.perf_counter()
scan.write_text("- - -" if what == "wildcard" else f"{address.channel} {address.target} {address.lun}")
dev = wait_disk()
times["disk"] = time.perf_counter() - started
if what == "plain":
    at = time.perf_counter()
    subprocess.run(filesystem.mkfs_argv("ext4", "/dev/" + dev), check=True, capture_output=True)
    times["mkfs"] = time.perf_counter() - at
    at = time.perf_counter()
    os.makedirs(folder, exist_ok=True)
    subprocess.run(["mount", "-t", "ext4", "/dev/" + dev, folder], check=True)
    times["mount"] = time.perf_counter() - at
times["seconds"] = time.perf_counter() - started
if what == "plain":
    subprocess.run(["umount", folder], check=True)
(root / scsi.BLOCK / dev / "device" / "delete").write_text("1")
print(json.dumps(times))
"""


def _guest_time(guest: LibvirtGuest, context: dict[str, str], what: str, folder: str) -> dict[str, float]:
    done = guest.run(
        [sys.executable, "-c", IN_GUEST, json.dumps(context), what, folder], timeout=300, env=csi.GUEST_ENV
    )
    if done.returncode != 0:
        raise RuntimeError(f"in-guest timing ({what}) failed: {done.stderr[-2000:]}")
    times: dict[str, float] = json.loads(done.stdout.strip().splitlines()[-1])
    return times


def _server_time(guest: LibvirtGuest, volume_id: str) -> dict[str, float]:
    """The last "NodeStageVolume VOLUME took …" of the node plugin's log: seconds, and phases."""
    done = guest.run(["grep", "-F", f"NodeStageVolume {volume_id} took", csi.NODE_LOG], timeout=60)
    lines = done.stdout.strip().splitlines()
    match = TOOK.search(lines[-1]) if lines else None
    if match is None:
        raise RuntimeError(f"the node plugin logged no NodeStageVolume {volume_id} took …: {done.stdout!r}")
    times = {"seconds": float(match["took"])}
    for phase in PHASE.finditer(match["phases"] or ""):
        times[phase["name"]] = float(phase["seconds"])
    return times


class Round:
    """One round: two blank volumes of SIZE published to the guest (`lunbridge` is staged, `plain`
    gets the plain mkfs + mount), each sample a dict of seconds by name."""

    def __init__(self, guest: LibvirtGuest, controller: Any, node: Any, node_id: str) -> None:
        self.guest, self.controller, self.node, self.node_id = guest, controller, node, node_id
        self.samples: dict[str, dict[str, float]] = {}

    def volume(self, name: str) -> tuple[str, dict[str, str]]:
        created = self.controller.CreateVolume(
            csi_pb2.CreateVolumeRequest(
                name=name,
                capacity_range=csi_pb2.CapacityRange(required_bytes=SIZE),
                volume_capabilities=[MOUNT],
            ),
            timeout=300,
        )
        volume_id = created.volume.volume_id
        try:
            published = self.controller.ControllerPublishVolume(
                csi_pb2.ControllerPublishVolumeRequest(
                    volume_id=volume_id, node_id=self.node_id, volume_capability=MOUNT
                ),
                timeout=300,
            )
        except BaseException:
            self.controller.DeleteVolume(csi_pb2.DeleteVolumeRequest(volume_id=volume_id), timeout=300)
            raise
        return volume_id, dict(published.publish_context)

    def drop(self, volume_id: str) -> None:
        self.controller.ControllerUnpublishVolume(
            csi_pb2.ControllerUnpublishVolumeRequest(volume_id=volume_id, node_id=self.node_id), timeout=300
        )
        self.controller.DeleteVolume(csi_pb2.DeleteVolumeRequest(volume_id=volume_id), timeout=300)

    def stage(self, key: str, volume_id: str, context: dict[str, str], staging: str) -> None:
        """NodeStage then NodeUnstage; the server's phases under `key`, the call's own cost apart."""
        request = csi_pb2.NodeStageVolumeRequest(
            volume_id=volume_id, staging_target_path=staging, volume_capability=MOUNT, publish_context=context
        )
        started = time.monotonic()
        self.node.NodeStageVolume(request, timeout=300)
        wall = time.monotonic() - started
        self.node.NodeUnstageVolume(
            csi_pb2.NodeUnstageVolumeRequest(volume_id=volume_id, staging_target_path=staging), timeout=300
        )
        self.samples[key] = _server_time(self.guest, volume_id)
        self.samples[f"{key}_rpc"] = {"seconds": wall, "overhead": wall - self.samples[key]["seconds"]}

    def run(self, plain_first: bool) -> dict[str, dict[str, float]]:
        name = f"bench-node-{uuid.uuid4().hex[:8]}"
        staging = f"/mnt/lunbridge-bench/{name}"  # the guest's own tmpfs
        ours, ours_context = self.volume(f"{name}-a")
        try:
            theirs, theirs_context = self.volume(f"{name}-b")
        except BaseException:
            self.drop(ours)
            raise
        try:
            try:
                for side in ("plain", "lunbridge") if plain_first else ("lunbridge", "plain"):
                    if side == "plain":
                        self.samples["plain"] = _guest_time(
                            self.guest, theirs_context, "plain", f"{staging}-plain"
                        )
                    else:
                        self.stage("stage_blank", ours, ours_context, staging)
                self.stage("stage_formatted", ours, ours_context, staging)
            finally:
                self.drop(ours)  # before the wildcard scan, which would bring its disk in again
            for what in ("targeted", "wildcard"):
                self.samples[what] = _guest_time(self.guest, theirs_context, what, staging)
        finally:
            self.drop(theirs)
        return self.samples


def _median(samples: Sequence[dict[str, dict[str, float]]], key: str, part: str = "seconds") -> float:
    return statistics.median(sample[key][part] for sample in samples)


def _phases(samples: Sequence[dict[str, dict[str, float]]], key: str) -> str:
    names = [name for name in samples[0][key] if name != "seconds"]
    return ", ".join(f"{name} {_median(samples, key, name):.3f}s" for name in names) or "no phases logged"


def report(samples: Sequence[dict[str, dict[str, float]]]) -> list[str]:
    """The bench's lines: (c) beside its goal, and (d)."""
    rounds = len(samples)
    ours, plain = _median(samples, "stage_blank"), _median(samples, "plain")
    mkfs = shlex.join(filesystem.mkfs_argv("ext4", "/dev/sdX"))
    # each round's two sides ran back to back: their ratio is what the machine's load moves least
    ratios = [sample["stage_blank"]["seconds"] / sample["plain"]["seconds"] for sample in samples]
    ratio = statistics.median(ratios)
    verdict = "meets" if ratio <= GOAL else "misses"
    targeted, wildcard = _median(samples, "targeted"), _median(samples, "wildcard")
    return [
        f"(c) NodeStage of a blank {SIZE >> 20} MiB disk, median of {rounds}, timed in the guest: "
        f"{ours:.3f}s ({_phases(samples, 'stage_blank')}) against a targeted rescan + `{mkfs}` + mount "
        f"{plain:.3f}s ({_phases(samples, 'plain')}): {ratio:.2f}x (median of the rounds' ratios "
        f"{' '.join(f'{each:.2f}' for each in ratios)}; of the medians {ours / plain:.2f}x), "
        f"goal <= {GOAL}x ({verdict} it)",
        f"    the gRPC call from this machine adds {_median(samples, 'stage_blank_rpc', 'overhead'):.3f}s "
        f"({_median(samples, 'stage_blank_rpc'):.3f}s in all); NodeStage of the same disk again (formatted, "
        f"no mkfs) {_median(samples, 'stage_formatted'):.3f}s ({_phases(samples, 'stage_formatted')})",
        f"(d) rescan until the disk is there, median of {rounds}: targeted {targeted * 1000:.1f}ms, "
        f"wildcard {wildcard * 1000:.1f}ms ({wildcard / targeted:.1f}x)",
    ]


def run(state: LabState, rounds: int) -> None:
    env = state.env()
    samples: list[dict[str, dict[str, float]]] = []
    with (
        grpc.insecure_channel(env["LUNBRIDGE_CSI_CONTROLLER_ENDPOINT"]) as controller_channel,
        grpc.insecure_channel(env["LUNBRIDGE_CSI_NODE_ENDPOINT"]) as node_channel,
    ):
        controller = csi_pb2_grpc.ControllerStub(controller_channel)  # type: ignore[no-untyped-call]
        node = csi_pb2_grpc.NodeStub(node_channel)  # type: ignore[no-untyped-call]
        node_id = node.NodeGetInfo(csi_pb2.NodeGetInfoRequest(), timeout=60).node_id
        guest = connect_guest(Path(state.lab_dir))
        try:
            for index in range(rounds):
                samples.append(Round(guest, controller, node, node_id).run(plain_first=index % 2 == 1))
        finally:
            guest.close()
    for line in report(samples):
        print(line)
