"""The DiskSnapshot object, typed: a point-in-time copy of a VirtualDisk's LUN kept on the
disk's storage backend (or an existing storage snapshot imported by name), which new disks
restore from (`VirtualDisk.spec.source.snapshot`). The CRD (`crds/disksnapshots.lunbridge.io
.yaml`) declares the same keys; a unit test holds the two together.

The CSI controller makes one per CreateSnapshot; its snapshot id is `<backend>/<storage
snapshot name>` (`handle`), which names the backend and survives the object (an imported
handle makes a new object)."""

from __future__ import annotations

import enum
from typing import ClassVar

from pydantic import model_validator

from lunbridge.api import DISK_SNAPSHOT_KIND, SOURCE_DISK_ANNOTATION
from lunbridge.errors import InvalidArgument
from lunbridge.models._base import Model
from lunbridge.models.conditions import Conditioned
from lunbridge.models.meta import KubeObject

HANDLE_SEPARATOR = "/"


class DeletionPolicy(enum.StrEnum):
    """What deleting the object does to the storage snapshot (VolumeSnapshotContent's rule)."""

    DELETE = "Delete"
    RETAIN = "Retain"


class SnapshotPhase(enum.StrEnum):
    PENDING = "Pending"
    READY = "Ready"
    DELETING = "Deleting"
    FAILED = "Failed"


class SnapshotSource(Model):
    """What the snapshot is of: a VirtualDisk (cut now), or a storage snapshot that exists
    (`backend` + `snapshotName`: imported, nothing is cut)."""

    virtual_disk: str | None = None
    backend: str | None = None
    snapshot_name: str | None = None

    @model_validator(mode="after")
    def _one_kind(self) -> SnapshotSource:
        imported = self.backend is not None or self.snapshot_name is not None
        if self.virtual_disk is not None and imported:
            raise ValueError("give either virtualDisk, or backend and snapshotName (an import), not both")
        if self.virtual_disk is None and not (self.backend and self.snapshot_name):
            raise ValueError("give virtualDisk, or both backend and snapshotName (an import)")
        return self

    @property
    def imported(self) -> bool:
        return self.virtual_disk is None


class AutoVerification(Model):
    """Verify this snapshot once it is ready: the operator creates a DiskVerification of the
    same name with these settings (see `diskverification.py`)."""

    verifier_node: str
    check: str | None = None


class DiskSnapshotSpec(Model):
    source: SnapshotSource
    deletion_policy: DeletionPolicy = DeletionPolicy.DELETE
    verification: AutoVerification | None = None


class VerificationRecord(Model):
    """The snapshot's last verification, as its DiskVerification ended."""

    name: str
    result: str
    time: str
    duration_seconds: float | None = None
    checker: str | None = None


class DiskSnapshotStatus(Conditioned):
    phase: SnapshotPhase | None = None
    message: str | None = None
    observed_generation: int | None = None
    ready_to_use: bool | None = None
    creation_time: str | None = None  # RFC 3339: when the cut was made
    restore_size: int | None = None  # bytes; a restore must be at least this large
    backend: str | None = None
    snapshot_name: str | None = None  # the storage snapshot's name on `backend`
    source_lun: str | None = None
    source_naa: str | None = None
    last_verification: VerificationRecord | None = None

    @property
    def handle(self) -> str | None:
        """`<backend>/<snapshot name>` once the storage snapshot is known."""
        if not (self.backend and self.snapshot_name):
            return None
        return make_handle(self.backend, self.snapshot_name)


class DiskSnapshot(KubeObject):
    """A whole DiskSnapshot object as the API server returns it."""

    kind: ClassVar[str] = DISK_SNAPSHOT_KIND
    spec: DiskSnapshotSpec
    status: DiskSnapshotStatus = DiskSnapshotStatus()

    @property
    def source_disk(self) -> str | None:
        """The VirtualDisk it was cut from: its source, or for a group member the annotation."""
        return self.spec.source.virtual_disk or self.metadata.annotations.get(SOURCE_DISK_ANNOTATION)

    @property
    def ready(self) -> bool:
        """Cut (or imported) and usable; still so while a blocked delete waits (phase Deleting)."""
        return bool(self.status.ready_to_use) and bool(self.status.snapshot_name)


def make_handle(backend: str, snapshot_name: str) -> str:
    return f"{backend}{HANDLE_SEPARATOR}{snapshot_name}"


def parse_handle(handle: str, field: str = "snapshot_id") -> tuple[str, str]:
    """(backend, storage snapshot name) of a handle; InvalidArgument naming `field` otherwise."""
    backend, sep, name = handle.partition(HANDLE_SEPARATOR)
    if not sep or not backend or not name or HANDLE_SEPARATOR in name:
        raise InvalidArgument(
            f"{field} {handle!r} is not a lunbridge snapshot id (<backend>/<snapshot name>)"
        )
    return backend, name
