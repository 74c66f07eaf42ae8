"""The VirtualDisk object, typed: what users write (spec), what the operator records (status),
and what the CSI controller and the tests read back. The CRD (`crds/virtualdisks.lunbridge.io
.yaml`) declares the same keys; a unit test holds the two together.

Upgrades: a status written before attachments were tagged by mode (keys `controllerKey`,
`busNumber`, `unitNumber`, `diskKey`, `target` beside `pciSlot` and `guestAddress`) reads as a
`hypervisor` attachment whose old coordinates move to `detail`; the next status write removes
the old keys.
"""

from __future__ import annotations

import enum
from typing import Any, ClassVar

import kubernetes.utils
from pydantic import Field, field_validator, model_validator

from lunbridge.api import VIRTUAL_DISK_KIND
from lunbridge.errors import InvalidArgument
from lunbridge.hypervisor.base import Scope
from lunbridge.models._base import Model
from lunbridge.models.conditions import Conditioned
from lunbridge.models.meta import KubeObject
from lunbridge.san import ScsiAddress

parse_quantity: Any = kubernetes.utils.parse_quantity


class FsType(enum.StrEnum):
    EXT4 = "ext4"
    XFS = "xfs"


class VolumeMode(enum.StrEnum):
    FILESYSTEM = "Filesystem"
    BLOCK = "Block"


class ReclaimPolicy(enum.StrEnum):
    DELETE = "Delete"
    RETAIN = "Retain"


class Phase(enum.StrEnum):
    PENDING = "Pending"
    PROVISIONING = "Provisioning"
    MAPPING = "Mapping"
    ATTACHING = "Attaching"
    READY = "Ready"
    DETACHING = "Detaching"
    DELETING = "Deleting"
    FAILED = "Failed"


class AttachMode(enum.StrEnum):
    """How the node reaches the LUN: a hypervisor attached it to the node's VM (the node
    rescans one SCSI address), or the node logs in to the storage server with its own initiator."""

    HYPERVISOR = "hypervisor"
    INITIATOR = "initiator"


class DiskSource(Model):
    """What a new LUN is a copy of (at most one)."""

    snapshot: str | None = None
    virtual_disk: str | None = None


class VirtualDiskSpec(Model):
    size: str
    backend: str | None = None
    pool: str | None = None
    fs_type: FsType = FsType.EXT4
    volume_mode: VolumeMode = VolumeMode.FILESYSTEM
    node_name: str | None = None
    scope: Scope | None = None
    source: DiskSource | None = None
    reclaim_policy: ReclaimPolicy = ReclaimPolicy.DELETE

    @field_validator("size", mode="before")
    @classmethod
    def _quantity_text(cls, value: Any) -> Any:
        return str(value) if isinstance(value, int) and not isinstance(value, bool) else value

    @property
    def size_bytes(self) -> int:
        """`size` in bytes; InvalidArgument when it is not a quantity."""
        try:
            return int(parse_quantity(self.size))
        except (TypeError, ValueError) as exc:
            raise InvalidArgument(f"spec.size {self.size!r} is not a quantity") from exc

    @classmethod
    def patch(cls, **fields: Any) -> dict[str, Any]:
        """A merge patch of the spec: `patch(node_name=None)` → `{"nodeName": None}`."""
        unknown = set(fields) - set(cls.model_fields)
        if unknown:
            raise TypeError(f"VirtualDiskSpec has no field {', '.join(sorted(unknown))}")
        return {
            cls.model_fields[name].alias or name: (value.value if isinstance(value, enum.Enum) else value)
            for name, value in fields.items()
        }


class LunStatus(Model):
    """The LUN on the storage server."""

    backend: str | None = None
    name: str | None = None
    id: int | None = None  # the LUN number the igroup's initiators see
    serial: str | None = None
    naa: str | None = None
    size_bytes: int | None = None


_LEGACY_ATTACHMENT_KEYS = ("controllerKey", "busNumber", "unitNumber", "diskKey", "target")


class AttachmentStatus(Model):
    """Where the LUN is attached and how the node reaches it.

    `hypervisor`: the VM (`vm`, `vmId`, `host`), the guest controller's `pciSlot` and the
    disk's `guestAddress` (`channel:target:lun`). `initiator`: `targetIqn`, `portals`, `lunId`.
    `detail`: the hypervisor's own coordinates, for diagnostics only.
    """

    mode: AttachMode = AttachMode.HYPERVISOR
    node: str
    provider_id: str | None = Field(default=None, alias="providerID")  # the Kubernetes spelling
    vm: str | None = None
    vm_id: str | None = None
    host: str | None = None
    pci_slot: int | None = None
    guest_address: str | None = None
    target_iqn: str | None = None
    portals: list[str] = Field(default_factory=list)
    lun_id: int | None = None
    detail: dict[str, int | str] = Field(default_factory=dict)

    @model_validator(mode="before")
    @classmethod
    def _upgrade(cls, data: Any) -> Any:
        if isinstance(data, dict) and "mode" not in data and any(k in data for k in _LEGACY_ATTACHMENT_KEYS):
            data = dict(data)
            detail = {k: data.pop(k) for k in _LEGACY_ATTACHMENT_KEYS if data.get(k) is not None}
            data["detail"] = {**detail, **(data.get("detail") or {})}
            data["mode"] = AttachMode.HYPERVISOR.value
        return data

    @field_validator("guest_address")
    @classmethod
    def _address(cls, value: str | None) -> str | None:
        return None if value is None else str(ScsiAddress.parse(value))


class VirtualDiskStatus(Conditioned):
    phase: Phase | None = None
    message: str | None = None
    observed_generation: int | None = None
    lun: LunStatus | None = None
    initiator_group: str | None = None
    attachment: AttachmentStatus | None = None


class VirtualDisk(KubeObject):
    """A whole VirtualDisk object as the API server returns it."""

    kind: ClassVar[str] = VIRTUAL_DISK_KIND
    spec: VirtualDiskSpec
    status: VirtualDiskStatus = VirtualDiskStatus()

    @property
    def current(self) -> bool:
        """The status describes the current spec generation."""
        return self.status.observed_generation == self.metadata.generation
