"""The DiskRestore object, typed: an action that puts a DiskSnapshot's content back into the
VirtualDisk it was cut from, in place (SnapDrive's `snap restore`): the disk keeps its name,
its LUN, NAA and serial, and its size when it grew after the snapshot. One object is one
restore; it is done once (`phase` Completed or Failed) and never repeated by a re-check. The
CRD (`crds/diskrestores.lunbridge.io.yaml`) declares the same keys."""

from __future__ import annotations

import enum
from typing import ClassVar

from lunbridge.api import DISK_RESTORE_KIND
from lunbridge.models._base import Model
from lunbridge.models.conditions import Conditioned
from lunbridge.models.meta import KubeObject


class RestorePhase(enum.StrEnum):
    PENDING = "Pending"
    RESTORING = "Restoring"
    COMPLETED = "Completed"
    FAILED = "Failed"


class DiskRestoreSpec(Model):
    virtual_disk: str
    snapshot: str


class DiskRestoreStatus(Conditioned):
    phase: RestorePhase | None = None
    message: str | None = None
    observed_generation: int | None = None
    start_time: str | None = None
    completion_time: str | None = None
    lun: str | None = None
    naa: str | None = None
    snapshot_name: str | None = None  # the storage snapshot the LUN was reverted to
    size_bytes: int | None = None

    @property
    def done(self) -> bool:
        return self.phase in (RestorePhase.COMPLETED, RestorePhase.FAILED)


class DiskRestore(KubeObject):
    kind: ClassVar[str] = DISK_RESTORE_KIND
    spec: DiskRestoreSpec
    status: DiskRestoreStatus = DiskRestoreStatus()
