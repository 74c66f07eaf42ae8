"""Typed models of what lunbridge writes and reads through the Kubernetes API: the
VirtualDisk, DiskSnapshot and InitiatorGroup objects (spec, status, conditions) and the CSI publish context.

The operator writes them, the CSI controller and node read them, and every test fake builds
them; each has one `to_dict` and one `from_dict`, so a key is spelled in one place only.
"""

from lunbridge.models._base import Model, merge_patch
from lunbridge.models.conditions import Condition, ConditionStatus, ConditionType
from lunbridge.models.diskgroupsnapshot import (
    DiskGroupSnapshot,
    DiskGroupSnapshotSpec,
    DiskGroupSnapshotStatus,
    GroupMember,
)
from lunbridge.models.diskrestore import DiskRestore, DiskRestoreSpec, DiskRestoreStatus, RestorePhase
from lunbridge.models.disksnapshot import (
    DeletionPolicy,
    DiskSnapshot,
    DiskSnapshotSpec,
    DiskSnapshotStatus,
    SnapshotPhase,
    SnapshotSource,
    make_handle,
    parse_handle,
)
from lunbridge.models.initiatorgroup import (
    InitiatorGroup,
    InitiatorGroupSpec,
    InitiatorGroupStatus,
    InitiatorRow,
)
from lunbridge.models.meta import ObjectMeta
from lunbridge.models.publish import PublishContext
from lunbridge.models.virtualdisk import (
    AttachmentStatus,
    AttachMode,
    DiskSource,
    FsType,
    LunStatus,
    Phase,
    ReclaimPolicy,
    VirtualDisk,
    VirtualDiskSpec,
    VirtualDiskStatus,
    VolumeMode,
)
from lunbridge.storage.base import OsType

__all__ = [
    "AttachMode",
    "AttachmentStatus",
    "Condition",
    "ConditionStatus",
    "ConditionType",
    "DeletionPolicy",
    "DiskGroupSnapshot",
    "DiskGroupSnapshotSpec",
    "DiskGroupSnapshotStatus",
    "DiskRestore",
    "DiskRestoreSpec",
    "DiskRestoreStatus",
    "DiskSnapshot",
    "DiskSnapshotSpec",
    "DiskSnapshotStatus",
    "DiskSource",
    "FsType",
    "GroupMember",
    "InitiatorGroup",
    "InitiatorGroupSpec",
    "InitiatorGroupStatus",
    "InitiatorRow",
    "LunStatus",
    "Model",
    "ObjectMeta",
    "OsType",
    "Phase",
    "PublishContext",
    "ReclaimPolicy",
    "RestorePhase",
    "SnapshotPhase",
    "SnapshotSource",
    "VirtualDisk",
    "VirtualDiskSpec",
    "VirtualDiskStatus",
    "VolumeMode",
    "make_handle",
    "merge_patch",
    "parse_handle",
]
