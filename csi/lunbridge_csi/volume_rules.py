"""The rules of the CSI controller that need no API server: how a request name becomes a
volume id, which capabilities, parameters and sizes are accepted (and which contradict a
disk), whether a request names the same volume as an existing disk, whose publication a disk
holds, and what a VirtualDisk's status means for CSI (provisioned, attached where, detached,
failed, no room on the VM, its publish context). Pure functions, so each rule is unit-tested on its own."""

from __future__ import annotations

import hashlib
import logging
import re
from collections.abc import Callable, Mapping
from dataclasses import dataclass
from typing import Any

import grpc.aio

from lunbridge.errors import AlreadyExists, Conflict, InvalidArgument, LimitExceeded, LunbridgeError, NotFound
from lunbridge.hypervisor.base import Scope
from lunbridge.models import (
    AttachMode,
    ConditionStatus,
    FsType,
    Phase,
    VirtualDisk,
    VirtualDiskSpec,
    VolumeMode,
)
from lunbridge.models import ConditionType as Cond
from lunbridge_csi._proto import csi_pb2
from lunbridge_csi.errors import OutOfRange

log = logging.getLogger(__name__)
Context = grpc.aio.ServicerContext[Any, Any]

MiB = 1 << 20
GiB = 1 << 30
DEFAULT_SIZE = GiB
MIN_SIZE = MiB  # the CRD's bounds
MAX_SIZE = 64 << 40

NAME_ANNOTATION = "csi.lunbridge.io/name"
MANAGED_BY = {"app.kubernetes.io/managed-by": "lunbridge-csi"}
# StorageClass parameter -> the VirtualDisk spec field it sets
PARAMETERS = {"backend": "backend", "pool": "pool", "fsType": "fs_type", "scope": "scope"}
RESERVED_PREFIX = "csi.storage.k8s.io/"  # the CO's own keys, passed through by some sidecars
FS_TYPES = tuple(t.value for t in FsType)
SCOPES = tuple(s.value for s in Scope)
FILESYSTEM, BLOCK = VolumeMode.FILESYSTEM.value, VolumeMode.BLOCK.value

Mode = csi_pb2.VolumeCapability.AccessMode
SUPPORTED_MODES = {
    Mode.SINGLE_NODE_WRITER,
    Mode.SINGLE_NODE_READER_ONLY,
    Mode.SINGLE_NODE_SINGLE_WRITER,
    Mode.SINGLE_NODE_MULTI_WRITER,
}
_DNS_LABEL = re.compile(r"^[a-z0-9]([-a-z0-9]{0,61}[a-z0-9])?$")
RPC = csi_pb2.ControllerServiceCapability.RPC
LIMIT_EXCEEDED = "LimitExceeded"  # the Ready reason of the operator's LimitExceeded (its classify table)


@dataclass(frozen=True)
class Timeouts:
    """Bounds, in seconds, of each wait on the operator."""

    provision: float = 120.0
    attach: float = 240.0
    detach: float = 240.0
    delete: float = 240.0
    expand: float = 120.0
    snapshot: float = 120.0  # a cut, an import or a delete (csi-snapshotter's --timeout is longer)


# --- request checks ---------------------------------------------------------------------------
def volume_id_for(name: str) -> str:
    """The VirtualDisk name of a CreateVolume request name: the name itself if it is a DNS
    label, else `csi-` and 40 hex digits of its SHA-256."""
    if _DNS_LABEL.match(name):
        return name
    return "csi-" + hashlib.sha256(name.encode()).hexdigest()[:40]


def is_object_name(text: str) -> bool:
    """`text` can name a lunbridge object made by this plugin (a DNS label: `volume_id_for`)."""
    return _DNS_LABEL.match(text) is not None


def known_volume(volume_id: str) -> str:
    """A volume id this plugin can have handed out (a DNS label: `volume_id_for`); NotFound
    naming `volume_id` otherwise, before any API call."""
    if not _DNS_LABEL.match(volume_id):
        raise NotFound(
            f"volume_id {volume_id!r} names no lunbridge volume: its volume ids are DNS labels "
            "(lowercase letters, digits and '-', at most 63)"
        )
    return volume_id


def required(value: str, field: str) -> str:
    if not value:
        raise InvalidArgument(f"{field} is required")
    return value


def capability_mode(capability: csi_pb2.VolumeCapability) -> str:
    """Check one capability's shape; Filesystem (mount) or Block. Raises InvalidArgument."""
    if not capability.HasField("access_mode") or capability.access_mode.mode == Mode.UNKNOWN:
        raise InvalidArgument("volume_capability.access_mode is required")
    kind = capability.WhichOneof("access_type")
    if kind is None:
        raise InvalidArgument("volume_capability needs an access_type: mount or block")
    if kind == "mount" and capability.mount.fs_type not in ("", *FS_TYPES):
        raise InvalidArgument(
            f"fs_type {capability.mount.fs_type!r} is not supported: use one of {', '.join(FS_TYPES)}"
        )
    return FILESYSTEM if kind == "mount" else BLOCK


def unsupported(capability: csi_pb2.VolumeCapability) -> str | None:
    """Why a well-formed capability cannot be offered, or None."""
    if capability.access_mode.mode not in SUPPORTED_MODES:
        name = Mode.Mode.Name(capability.access_mode.mode)
        return f"access mode {name} is not supported: a LUN is attached to one node at a time"
    return None


def check_capabilities(capabilities: Any, field: str = "volume_capabilities") -> tuple[str, str]:
    """Every capability well-formed and supported: (volumeMode, fs_type asked or '')."""
    if not capabilities:
        raise InvalidArgument(f"{field} is required")
    modes = {capability_mode(c) for c in capabilities}
    for capability in capabilities:
        reason = unsupported(capability)
        if reason:
            raise InvalidArgument(reason)
    if len(modes) > 1:
        raise InvalidArgument(f"{field} mixes mount and block: a volume is one or the other")
    fs_types = {c.mount.fs_type for c in capabilities if c.WhichOneof("access_type") == "mount"} - {""}
    if len(fs_types) > 1:
        raise InvalidArgument(f"{field} asks for several fs_types: {sorted(fs_types)}")
    return modes.pop(), (fs_types.pop() if fs_types else "")


def contradiction(disk: VirtualDisk, capability: csi_pb2.VolumeCapability) -> str | None:
    """Why a well-formed capability cannot be used on this disk, or None. The controller keeps
    no capability of its own: the disk's spec is the truth (volumeMode Filesystem is mount
    access, Block is block access; a mount fs_type, when given, is the disk's fsType)."""
    spec, volume, mode = disk.spec, disk.name, disk.spec.volume_mode
    if capability_mode(capability) != mode.value:
        kind = capability.WhichOneof("access_type")
        return f"volume_capability asks for {kind} access, but volume {volume} has volumeMode {mode}"
    fs_type = capability.mount.fs_type if mode is VolumeMode.FILESYSTEM else ""
    if fs_type and fs_type != spec.fs_type.value:
        return f"volume_capability asks for fs_type {fs_type}, but volume {volume} has fsType {spec.fs_type}"
    return None


def content_source(request: csi_pb2.CreateVolumeRequest) -> tuple[str, str] | None:
    """("volume", id) to clone (spec.source.virtualDisk) or ("snapshot", id) to restore
    (spec.source.snapshot), if the request has a content source."""
    if not request.HasField("volume_content_source"):
        return None
    source = request.volume_content_source
    if source.WhichOneof("type") == "snapshot":
        return "snapshot", required(source.snapshot.snapshot_id, "volume_content_source.snapshot.snapshot_id")
    if source.WhichOneof("type") == "volume":
        return "volume", required(source.volume.volume_id, "volume_content_source.volume.volume_id")
    raise InvalidArgument("volume_content_source names neither a volume nor a snapshot")


def check_same_volume(disk: VirtualDisk, name: str, spec: VirtualDiskSpec, low: int, high: int) -> None:
    """An existing disk is the volume a CreateVolume asks for, else AlreadyExists saying why not."""
    meta, have = disk.metadata, disk.spec
    if meta.annotations.get(NAME_ANNOTATION) != name:
        raise AlreadyExists(f"VirtualDisk {meta.name} exists but was not made for volume {name!r}")
    if meta.deletion_timestamp:
        raise AlreadyExists(f"VirtualDisk {meta.name} is being deleted; create it again afterwards")
    size = have.size_bytes
    if (low and size < low) or (high and size > high):
        raise AlreadyExists(f"volume {name!r} exists with size {have.size}, outside the requested range")
    if have.source != spec.source:
        raise AlreadyExists(f"volume {name!r} exists with source {have.source}, not {spec.source}")
    compared = ["volume_mode", "backend", "pool", "scope"]
    if spec.volume_mode is VolumeMode.FILESYSTEM:
        compared.append("fs_type")
    for field in compared:
        wanted, found = getattr(spec, field), getattr(have, field)
        if wanted != found:
            raise AlreadyExists(f"volume {name!r} exists with {field} {found}, not {wanted}")


def check_parameters(parameters: Mapping[str, str]) -> dict[str, str]:
    """StorageClass parameters as VirtualDisk spec fields (`{"fs_type": "xfs"}`)."""
    fields: dict[str, str] = {}
    for key, value in parameters.items():
        if key.startswith(RESERVED_PREFIX):
            continue
        if key not in PARAMETERS:
            raise InvalidArgument(f"unknown parameter {key!r}: the parameters are {', '.join(PARAMETERS)}")
        if key == "fsType" and value not in FS_TYPES:
            raise InvalidArgument(f"parameter fsType {value!r} is not one of {', '.join(FS_TYPES)}")
        if key == "scope" and value not in SCOPES:
            raise InvalidArgument(f"parameter scope {value!r} is not one of {', '.join(SCOPES)}")
        if value:
            fields[PARAMETERS[key]] = value
    return fields


def capacity_bounds(capacity_range: csi_pb2.CapacityRange | None) -> tuple[int, int]:
    """(required, limit) bytes; 0 means not given."""
    if capacity_range is None:
        return 0, 0
    low, high = capacity_range.required_bytes, capacity_range.limit_bytes
    if low < 0 or high < 0:
        raise InvalidArgument("capacity_range bytes cannot be negative")
    if high and low > high:
        raise InvalidArgument(f"capacity_range required_bytes {low} is above limit_bytes {high}")
    return low, high


def size_for(capacity_range: csi_pb2.CapacityRange | None, default: int = DEFAULT_SIZE) -> int:
    """The size to provision: the required bytes rounded up to MiB (default 1Gi, at most the
    limit); OutOfRange when the range cannot be met."""
    low, high = capacity_bounds(capacity_range)
    size = low or (min(default, high) if high else default)
    size = max(-(-size // MiB) * MiB, MIN_SIZE)
    if high and size > high:
        raise OutOfRange(f"no size in MiB steps of at least {MIN_SIZE} bytes fits under limit_bytes {high}")
    if size > MAX_SIZE:
        raise OutOfRange(f"{size} bytes is above the largest LUN ({MAX_SIZE} bytes)")
    return size


def quantity(size: int) -> str:
    return f"{size // GiB}Gi" if size % GiB == 0 else f"{size // MiB}Mi"


# --- reading status ---------------------------------------------------------------------------
def disk_or_gone(name: str) -> Callable[[dict[str, Any] | None], VirtualDisk]:
    """How a watch's version of VirtualDisk `name` (the API's dict) is read: NotFound once it
    is deleted, as a read of it would say."""

    def parse(body: dict[str, Any] | None) -> VirtualDisk:
        if body is None:
            raise NotFound(f"VirtualDisk {name} is gone")
        return VirtualDisk.from_dict(body)

    return parse


def provisioned(disk: VirtualDisk) -> bool:
    lun = disk.status.lun
    return disk.status.is_true(Cond.PROVISIONED) and lun is not None and bool(lun.naa)


def attached_to(node: str) -> Callable[[VirtualDisk], bool]:
    def check(disk: VirtualDisk) -> bool:
        status = disk.status
        return (
            disk.current
            and status.is_true(Cond.READY, disk.metadata.generation)
            and status.is_true(Cond.ATTACHED)
            and status.attachment is not None
            and status.attachment.node == node
        )

    return check


def detached(disk: VirtualDisk) -> bool:
    status = disk.status
    return (
        disk.current
        and status.attachment is None
        and not status.is_true(Cond.ATTACHED)
        and status.phase in (Phase.READY, Phase.FAILED)
    )


def detached_from(node_id: str) -> Callable[[VirtualDisk], bool]:
    """The disk is not (or no longer) attached to the VM of providerID `node_id`, nor served to
    the node of that name (a node that logs in itself)."""

    def check(disk: VirtualDisk) -> bool:
        attachment = disk.status.attachment
        if attachment is None:
            return True
        if attachment.mode is AttachMode.INITIATOR:
            return attachment.node != node_id
        return attachment.provider_id != node_id

    return check


def publication_of(disk: VirtualDisk, node_id: str, provider_id: str | None) -> bool:
    """Whether the disk's publication (spec.nodeName, a Node that exists with spec.providerID
    `provider_id`) is the one to `node_id`: that Node has that providerID, or the operator
    attached the disk for that very Node under it. A node that logs in itself has its Node
    name for node_id. An attachment recorded for another Node (a move the operator has not
    carried out yet) says nothing of the current publication."""
    if node_id in (provider_id, disk.spec.node_name):
        return True
    attachment = disk.status.attachment
    return (
        attachment is not None
        and attachment.node == disk.spec.node_name
        and attachment.provider_id == node_id
    )


def failure(disk: VirtualDisk) -> str | None:
    """The operator's message when it gave up on the current generation."""
    status = disk.status
    if status.phase is Phase.FAILED and disk.current:
        ready = status.condition(Cond.READY)
        return status.message or (ready.message if ready else "") or "failed"
    return None


def exhausted(disk: VirtualDisk) -> str | None:
    """The operator's message when the disk's VM has no room for it: Ready is False with reason
    LimitExceeded for the current generation (no free SCSI unit, no LUN id left). The operator
    retries that every 60 s and never marks the disk Failed, so only this ends a publish early."""
    ready = disk.status.condition(Cond.READY)
    if (
        ready is None
        or ready.status is not ConditionStatus.FALSE
        or ready.reason != LIMIT_EXCEEDED
        or ready.observed_generation != disk.metadata.generation
    ):
        return None
    return ready.message or disk.status.message or "no room left"


def gave_up(disk: VirtualDisk, attach: bool = False) -> LunbridgeError | None:
    """The error a wait on the operator ends with before its bound, or None to keep waiting.
    The operator gave up (phase Failed): a bad spec is the request's fault (INVALID_ARGUMENT),
    anything else FAILED_PRECONDITION. An attach (`attach`) also ends when the VM is full
    (`exhausted`: LimitExceeded, RESOURCE_EXHAUSTED), with the operator's message."""
    name = disk.name
    reason = failure(disk)
    if reason is not None:
        return (InvalidArgument if invalid(disk) else Conflict)(f"VirtualDisk {name} failed: {reason}")
    full = exhausted(disk) if attach else None
    if full is not None:
        return LimitExceeded(f"VirtualDisk {name} cannot be attached: {full}")
    return None


def invalid(disk: VirtualDisk) -> bool:
    """The operator gave up because the spec is wrong (not a fault retrying could fix)."""
    ready = disk.status.condition(Cond.READY)
    return ready is not None and ready.reason == "InvalidArgument"


def volume_context(disk: VirtualDisk) -> dict[str, str]:
    spec = disk.spec
    context = {"volumeMode": spec.volume_mode.value}
    if spec.volume_mode is VolumeMode.FILESYSTEM:
        context["fsType"] = spec.fs_type.value
    return context


def capacity_of(disk: VirtualDisk) -> int:
    lun = disk.status.lun
    return (lun.size_bytes if lun is not None else None) or disk.spec.size_bytes
