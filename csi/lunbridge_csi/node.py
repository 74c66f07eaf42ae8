"""The CSI Node service: runs inside each guest (privileged DaemonSet) and turns an attached
LUN into a mounted filesystem or a raw block device.

publish_context (written by ControllerPublishVolume from the VirtualDisk's status):
`lunbridge.models.PublishContext` (its docstring lists the keys): the LUN's NAA, the PCI slot
of the guest SCSI controller the disk sits on, and the disk's `channel:target:lun` on that
controller's SCSI host. NodeStageVolume rescans exactly that address, never the whole bus, and
checks every device against the NAA (VPD page 0x83) before anything is written to it or mounted
from it; a mismatch is FAILED_PRECONDITION and nothing is written.

NodePublishVolume at a target path that already has a mount is OK only when that mount is the
bind mount the request asks for (mountinfo: the same filesystem and folder as a bind of the
staging path, or of the volume's device for block, and the same read-only state); anything
else there (another volume or device, read-write where read-only is asked or the reverse) is
ALREADY_EXISTS, as the spec says of a volume published at target_path but incompatible.

What a staged volume is on this node (its NAA, device, address) is kept in a small JSON file
per volume under `state_dir`, so unstage, publish and expand find the device again; the device
is re-checked by NAA whenever it is used. NodeUnstageVolume also takes a dead disk away (the
LUN gone, the device offline; `guest.teardown`): OK, and OK again on a retry. Domain errors map
to gRPC codes through the table in `lunbridge_csi.errors`; a second call on a volume already
being worked on is ABORTED.
"""

from __future__ import annotations

import asyncio
import contextlib
import json
import logging
import os
import time
from dataclasses import asdict, dataclass
from pathlib import Path
from typing import Any
from urllib.parse import quote

import grpc.aio

from lunbridge.command import Runner, run
from lunbridge.errors import AlreadyExists, Conflict, NotFound, Unavailable
from lunbridge.hypervisor.detect import detect
from lunbridge.models import AttachMode, PublishContext
from lunbridge.storage import chap
from lunbridge_csi import node_rules
from lunbridge_csi._proto import csi_pb2, csi_pb2_grpc
from lunbridge_csi.errors import InFlight, handled
from lunbridge_csi.guest import attached, filesystem, health, iscsi, libblkid, mount, scsi, teardown
from lunbridge_csi.guest.attached import placement
from lunbridge_csi.guest.initiators import decide_mode
from lunbridge_csi.guest.limits import DEFAULT_LIMITS, Limits

log = logging.getLogger(__name__)
Context = grpc.aio.ServicerContext[Any, Any]
Rpc = csi_pb2.NodeServiceCapability.RPC
Mode = csi_pb2.VolumeCapability.AccessMode.Mode
Unit = csi_pb2.VolumeUsage.Unit

READ_ONLY_MODES = {Mode.SINGLE_NODE_READER_ONLY, Mode.MULTI_NODE_READER_ONLY}
DEFAULT_STATE_DIR = Path("/var/lib/lunbridge-guest")


@dataclass(frozen=True)
class Staged:
    """What this node knows of one staged volume (its JSON file under state_dir)."""

    volume_id: str
    naa: str
    device: str  # sdX when it was staged
    hctl: str
    staging_path: str
    block: bool
    fs_type: str
    target: str | None = None  # initiator mode: the session's target and portal
    portal: str | None = None
    read_only: bool = False  # mounted read-only at the staging path (mount flag "ro")

    @classmethod
    def read(cls, path: Path) -> Staged:
        return cls(**json.loads(path.read_text()))


class NodeService(csi_pb2_grpc.NodeServicer):
    """Every command runs through `runner` within its limit from `limits`: a command that
    overruns it is ended and the call fails UNAVAILABLE, releasing the volume for a retry. The
    blank probe runs in this process through libblkid when `runner` is `lunbridge.command.run`.

    NodeGetInfo's max_volumes_per_node: `max_volumes` when given, else how many lunbridge disks
    this VM can hold in all (`scsi.volume_capacity`; on KVM `kvm_max_volumes`), never the
    number free now: the CO reads it once and subtracts the attached volumes itself."""

    def __init__(
        self,
        *,
        root: Path = Path("/"),
        runner: Runner = run,
        limits: Limits = DEFAULT_LIMITS,
        node_id: str | None = None,
        max_volumes: int | None = None,
        kvm_max_volumes: int = scsi.DEFAULT_KVM_MAX_VOLUMES,
        state_dir: Path = DEFAULT_STATE_DIR,
        device_timeout: float = 30.0,
        dev_dir: str = "/dev",
        node_name: str | None = None,
        attach_mode: str = "auto",
    ) -> None:
        self.root = root
        self.runner = runner
        self.limits = limits
        self.node_id = node_id
        self.max_volumes = max_volumes
        self.kvm_max_volumes = kvm_max_volumes
        self.state_dir = state_dir
        self.device_timeout = device_timeout
        self.dev_dir = dev_dir
        self.node_name = node_name
        self.attach_mode = attach_mode
        self.in_flight = InFlight()
        self.iscsiadm = iscsi.Iscsiadm(runner, limits)
        self.sessions_lock = asyncio.Lock()  # a login and the last logout of a target never cross
        if runner is run:  # the blank probe's library, loaded now rather than on the first NodeStage
            libblkid.load()

    # --- state of staged volumes -------------------------------------------------------------

    def _staged_naas(self) -> set[str]:
        """The NAAs of the volumes staged here (a file that cannot be read names none)."""
        naas: set[str] = set()
        for path in sorted(self.state_dir.glob("*.json")) if self.state_dir.is_dir() else []:
            with contextlib.suppress(OSError, ValueError, TypeError):
                naas.add(Staged.read(path).naa)
        return naas

    def _state_file(self, volume_id: str) -> Path:
        return self.state_dir / f"{quote(volume_id, safe='')}.json"

    def _load(self, volume_id: str) -> Staged | None:
        try:
            return Staged.read(self._state_file(volume_id))
        except FileNotFoundError:
            return None

    def _save(self, staged: Staged) -> None:
        self.state_dir.mkdir(parents=True, exist_ok=True)
        path = self._state_file(staged.volume_id)
        temporary = path.with_suffix(".tmp")
        temporary.write_text(json.dumps(asdict(staged)))
        temporary.replace(path)

    def _dev(self, device: str) -> str:
        return f"{self.dev_dir}/{device}"

    def _current_device(self, staged: Staged) -> str:
        """The disk that carries the staged volume's NAA now (re-checked; names can move)."""
        if staged.naa in scsi.device_naas(self.root, staged.device):
            return staged.device
        found = scsi.devices_with_naa(self.root, staged.naa)
        if not found:
            raise NotFound(f"volume {staged.volume_id}: no disk with {staged.naa} in this guest any more")
        return found[0]

    def _initiator_mode(self) -> bool:
        """This node logs in itself: so configured, or `auto` with no --node-id and no VM
        lunbridge can name (a --node-id keeps the hypervisor path's identity, as before modes)."""
        if self.attach_mode != "auto":
            return self.attach_mode == AttachMode.INITIATOR.value
        return not self.node_id and decide_mode(self.root).mode is AttachMode.INITIATOR

    # --- identity ----------------------------------------------------------------------------

    @handled
    async def NodeGetInfo(
        self, request: csi_pb2.NodeGetInfoRequest, context: Context
    ) -> csi_pb2.NodeGetInfoResponse:
        if self._initiator_mode():
            node_id = self.node_id or self.node_name
            if not node_id:
                raise Unavailable("this node logs in with its own initiator and is known by its Node name: "
                                  "set --node-name (NODE_NAME) or --node-id")  # fmt: skip
            # LUN ids a target gives one initiator bound it, not a VM's SCSI slots: the CO decides
            return csi_pb2.NodeGetInfoResponse(node_id=node_id, max_volumes_per_node=self.max_volumes or 0)
        node_id = self.node_id or detect(self.root).provider_id
        if not node_id:
            raise Unavailable(
                "this node has no hypervisor identity lunbridge understands (DMI shows no vSphere or "
                "libvirt VM UUID); set --node-id, or --attach-mode initiator to log in itself"
            )
        limit = self.max_volumes
        if limit is None:
            limit = scsi.volume_capacity(self.root, self._staged_naas(), self.kvm_max_volumes)
        return csi_pb2.NodeGetInfoResponse(node_id=node_id, max_volumes_per_node=limit)

    @handled
    async def NodeGetCapabilities(
        self, request: csi_pb2.NodeGetCapabilitiesRequest, context: Context
    ) -> csi_pb2.NodeGetCapabilitiesResponse:
        kinds = (Rpc.STAGE_UNSTAGE_VOLUME, Rpc.EXPAND_VOLUME, Rpc.GET_VOLUME_STATS, Rpc.VOLUME_CONDITION)
        return csi_pb2.NodeGetCapabilitiesResponse(
            capabilities=[csi_pb2.NodeServiceCapability(rpc=Rpc(type=kind)) for kind in kinds]
        )

    # --- stage / unstage ---------------------------------------------------------------------

    @handled
    async def NodeStageVolume(
        self, request: csi_pb2.NodeStageVolumeRequest, context: Context
    ) -> csi_pb2.NodeStageVolumeResponse:
        volume_id = node_rules.require(request.volume_id, "volume_id")
        staging = node_rules.path(request.staging_target_path, "staging_target_path")
        capability = node_rules.capability(request)
        published = PublishContext.from_dict(request.publish_context)
        initiator = published.mode is AttachMode.INITIATOR
        where = None if initiator else placement(published)
        secrets = chap.from_values(request.secrets, "the node-stage secret") if initiator else None
        block = capability.WhichOneof("access_type") == "block"
        fs_type = "" if block else filesystem.fs_type(capability.mount.fs_type)
        read_only = not block and "ro" in capability.mount.mount_flags
        async with self.in_flight.hold(volume_id):
            started = time.monotonic()
            what = f"volume {volume_id}"
            if where is not None:
                host, device = await attached.find_disk(self.root, where, self.device_timeout, what)
                staged = Staged(volume_id, where.naa, device, scsi.hctl(host, where.address), staging, block,
                                fs_type, read_only=read_only)  # fmt: skip
            else:
                async with self.sessions_lock:
                    session, hctl, device = await attached.find_logged_in_disk(
                        self.root, self.iscsiadm, published, secrets, self.device_timeout, what
                    )
                staged = Staged(volume_id, published.naa, device, hctl, staging, block, fs_type,
                                session.target, session.portal, read_only)  # fmt: skip
            dev = self._dev(device)
            phases = {"disk": time.monotonic() - started}  # what each step took, for the log
            mounted = None if block else mount.mounted_at(self.root, staging)
            if mounted is not None and mounted.source != dev:
                raise Conflict(
                    f"{staging} already has {mounted.source} mounted, not {dev} of volume {volume_id}"
                )
            self._save(staged)
            if not block and mounted is None:
                at = time.monotonic()
                found = await filesystem.probe(self.runner, self.limits, dev)
                phases["probe"], at = time.monotonic() - at, time.monotonic()
                formatted = await filesystem.ensure_filesystem(self.runner, self.limits, dev, fs_type, found)
                phases["mkfs"], at = time.monotonic() - at, time.monotonic()
                await asyncio.to_thread(os.makedirs, staging, exist_ok=True)
                await mount.mount(
                    self.runner, self.limits, dev, staging, fs_type, list(capability.mount.mount_flags)
                )
                phases["mount"] = time.monotonic() - at
                log.info("staged %s (%s, formatted=%s) at %s", volume_id, dev, formatted, staging)
            log.info("NodeStageVolume %s took %.3fs (%s)", volume_id, time.monotonic() - started,
                     ", ".join(f"{name} {seconds:.3f}s" for name, seconds in phases.items()))  # fmt: skip
        return csi_pb2.NodeStageVolumeResponse()

    @handled
    async def NodeUnstageVolume(
        self, request: csi_pb2.NodeUnstageVolumeRequest, context: Context
    ) -> csi_pb2.NodeUnstageVolumeResponse:
        volume_id = node_rules.require(request.volume_id, "volume_id")
        staging = node_rules.path(request.staging_target_path, "staging_target_path")
        async with self.in_flight.hold(volume_id):
            staged = self._load(volume_id)
            args = (self.runner, self.limits, self.root, self.dev_dir)
            devices = await teardown.unmount_staging(*args, staging)
            if staged is not None:
                devices.update(scsi.devices_with_naa(self.root, staged.naa))
            await teardown.remove_disks(*args, devices, within=self.device_timeout)
            if staged is not None:
                await self.log_out_when_unused(staged.target, staged.portal, but=volume_id)
            self._state_file(volume_id).unlink(missing_ok=True)
        return csi_pb2.NodeUnstageVolumeResponse()

    async def log_out_when_unused(self, target: str | None, portal: str | None, but: str = "") -> None:
        """Log out of the session to `target` at `portal` (initiator mode) once no staged
        volume but `but` uses it; nothing for a hypervisor-path volume (no target)."""
        if target is None or portal is None:
            return
        async with self.sessions_lock:
            for path in sorted(self.state_dir.glob("*.json")):
                try:
                    other = Staged.read(path)
                except (OSError, ValueError, TypeError):
                    log.warning("%s cannot be read: the session to %s stays, it may be in use", path, target)
                    return
                if (other.target, other.portal) == (target, portal) and other.volume_id != but:
                    return
            await self.iscsiadm.logout(target, portal)
            log.info("logged out of %s at %s: its last lunbridge LUN is gone", target, portal)

    # --- publish / unpublish -----------------------------------------------------------------

    @handled
    async def NodePublishVolume(
        self, request: csi_pb2.NodePublishVolumeRequest, context: Context
    ) -> csi_pb2.NodePublishVolumeResponse:
        volume_id = node_rules.require(request.volume_id, "volume_id")
        target = node_rules.path(request.target_path, "target_path")
        staging = node_rules.path(request.staging_target_path, "staging_target_path")
        capability = node_rules.capability(request)
        read_only = request.readonly or capability.access_mode.mode in READ_ONLY_MODES
        block = capability.WhichOneof("access_type") == "block"
        async with self.in_flight.hold(volume_id):
            if block:
                staged = self._load(volume_id)
                if staged is None:
                    raise Conflict(f"volume {volume_id} is not staged on this node (NodeStageVolume first)")
                source = self._dev(self._current_device(staged))
            else:
                if mount.mounted_at(self.root, staging) is None:
                    raise Conflict(f"volume {volume_id} is not staged at {staging} (NodeStageVolume first)")
                source = staging
            present = mount.mounted_at(self.root, target)
            if present is not None:  # published already: the same, or incompatible
                reason = mount.bind_mismatch(self.root, present, source, read_only)
                if reason is not None:
                    raise AlreadyExists(f"volume {volume_id} cannot be published at {target}: {reason}")
                return csi_pb2.NodePublishVolumeResponse()
            if block:
                await asyncio.to_thread(mount.make_file, target)
            else:
                await asyncio.to_thread(os.makedirs, target, exist_ok=True)
            await mount.bind_mount(self.runner, self.limits, source, target, read_only)
        return csi_pb2.NodePublishVolumeResponse()

    @handled
    async def NodeUnpublishVolume(
        self, request: csi_pb2.NodeUnpublishVolumeRequest, context: Context
    ) -> csi_pb2.NodeUnpublishVolumeResponse:
        volume_id = node_rules.require(request.volume_id, "volume_id")
        target = node_rules.path(request.target_path, "target_path")
        async with self.in_flight.hold(volume_id):
            await mount.unmount(self.runner, self.limits, self.root, target)
            await asyncio.to_thread(mount.remove_target, target)
        return csi_pb2.NodeUnpublishVolumeResponse()

    # --- stats / expand ----------------------------------------------------------------------

    @handled
    async def NodeGetVolumeStats(
        self, request: csi_pb2.NodeGetVolumeStatsRequest, context: Context
    ) -> csi_pb2.NodeGetVolumeStatsResponse:
        volume_id = node_rules.require(request.volume_id, "volume_id")
        path = node_rules.path(request.volume_path, "volume_path", volume_there=True)
        kind = await asyncio.to_thread(mount.path_kind, path)
        if kind is None:
            raise NotFound(f"volume path {path} of volume {volume_id} does not exist")
        staged = self._load(volume_id)
        if staged is None and kind != "dir":
            raise NotFound(f"volume {volume_id} is not staged on this node")
        naa, recorded = (staged.naa, staged.device) if staged else (None, None)
        device, condition = await asyncio.to_thread(
            health.condition, self.root, path, naa=naa, recorded=recorded, filesystem=kind == "dir",
            read_only_asked=staged is not None and staged.read_only,
        )  # fmt: skip
        usage = [csi_pb2.VolumeUsage(unit=Unit.BYTES)]  # the kubelet drops a condition without usage
        if kind == "dir":
            try:
                usage = node_rules.usage_of(await asyncio.to_thread(os.statvfs, path))
            except OSError as exc:
                if not condition.abnormal:
                    condition = health.unreadable(path, exc)
        elif device is not None and not condition.abnormal:
            usage = [csi_pb2.VolumeUsage(unit=Unit.BYTES, total=scsi.size_bytes(self.root, device))]
        if condition.abnormal:
            log.warning("volume %s at %s: %s", volume_id, path, condition.message)
        volume_condition = csi_pb2.VolumeCondition(abnormal=condition.abnormal, message=condition.message)
        return csi_pb2.NodeGetVolumeStatsResponse(usage=usage, volume_condition=volume_condition)

    @handled
    async def NodeExpandVolume(
        self, request: csi_pb2.NodeExpandVolumeRequest, context: Context
    ) -> csi_pb2.NodeExpandVolumeResponse:
        volume_id = node_rules.require(request.volume_id, "volume_id")
        path = node_rules.path(request.volume_path, "volume_path", volume_there=True)
        node_rules.expansion(request)
        async with self.in_flight.hold(volume_id):
            staged = self._load(volume_id)
            if staged is None:
                raise NotFound(f"volume {volume_id} is not staged on this node")
            device = self._current_device(staged)
            size = await scsi.rescan_size(self.root, device)
            block = staged.block or (
                request.HasField("volume_capability") and request.volume_capability.HasField("block")
            )
            if not block:
                mounted_path = (
                    staged.staging_path if mount.mounted_at(self.root, staged.staging_path) else path
                )
                await filesystem.grow(
                    self.runner, self.limits, self._dev(device), staged.fs_type, mounted_path
                )
        return csi_pb2.NodeExpandVolumeResponse(capacity_bytes=size)
