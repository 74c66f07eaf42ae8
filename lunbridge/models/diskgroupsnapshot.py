"""The DiskGroupSnapshot object, typed: snapshots of several VirtualDisks (of one backend) cut
at one instant in their write stream (a consistency group, SnapDrive's multi-LUN `snap
create`). Each member becomes a DiskSnapshot of its own (`<group>-<disk>`, owned by the group),
so disks restore from members as from any snapshot. The CRD
(`crds/diskgroupsnapshots.lunbridge.io.yaml`) declares the same keys."""

from __future__ import annotations

from typing import ClassVar

from pydantic import Field

from lunbridge.api import DISK_GROUP_SNAPSHOT_KIND
from lunbridge.models._base import Model
from lunbridge.models.conditions import Conditioned
from lunbridge.models.disksnapshot import DeletionPolicy, SnapshotPhase
from lunbridge.models.meta import KubeObject


class DiskGroupSnapshotSpec(Model):
    virtual_disks: list[str]
    deletion_policy: DeletionPolicy = DeletionPolicy.DELETE


class GroupMember(Model):
    virtual_disk: str
    lun: str | None = None
    snapshot_name: str  # the storage snapshot
    disk_snapshot: str  # the member's DiskSnapshot
    restore_size: int | None = None


class DiskGroupSnapshotStatus(Conditioned):
    phase: SnapshotPhase | None = None
    message: str | None = None
    observed_generation: int | None = None
    ready_to_use: bool | None = None
    creation_time: str | None = None
    backend: str | None = None
    members: list[GroupMember] = Field(default_factory=list)


class DiskGroupSnapshot(KubeObject):
    kind: ClassVar[str] = DISK_GROUP_SNAPSHOT_KIND
    spec: DiskGroupSnapshotSpec
    status: DiskGroupSnapshotStatus = DiskGroupSnapshotStatus()
