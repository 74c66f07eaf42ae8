"""Typed models of what lunbridge writes and reads through the Kubernetes API: the
VirtualDisk, DiskSnapshot, DiskVerification and the other lunbridge objects (spec, status,
conditions), the node channel's task and report, and the CSI publish context.

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
    AutoVerification,
    DeletionPolicy,
    DiskSnapshot,
    DiskSnapshotSpec,
    DiskSnapshotStatus,
    SnapshotPhase,
    SnapshotSource,
    VerificationRecord,
    make_handle,
    parse_handle,
)
from lunbridge.models.diskverification import (
    DiskVerification,
    DiskVerificationSpec,
    DiskVerificationStatus,
    VerificationPhase,
    VerificationResult,
    VerifyOutcome,
    VerifyRequest,
)
from lunbridge.models.initiatorgroup import (
    InitiatorGroup,
    InitiatorGroupSpec,
    InitiatorGroupStatus,
    InitiatorRow,
)
from lunbridge.models.lunbridgenode import LunbridgeNode, LunbridgeNodeSpec, LunbridgeNodeStatus
from lunbridge.models.meta import ObjectMeta
from lunbridge.models.nodetask import NodeReport, NodeTask, TaskState, node_task_label
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
    "AutoVerification",
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
    "DiskVerification",
    "DiskVerificationSpec",
    "DiskVerificationStatus",
    "FsType",
    "GroupMember",
    "InitiatorGroup",
    "InitiatorGroupSpec",
    "InitiatorGroupStatus",
    "InitiatorRow",
    "LunStatus",
    "LunbridgeNode",
    "LunbridgeNodeSpec",
    "LunbridgeNodeStatus",
    "Model",
    "NodeReport",
    "NodeTask",
    "ObjectMeta",
    "OsType",
    "Phase",
    "PublishContext",
    "ReclaimPolicy",
    "RestorePhase",
    "SnapshotPhase",
    "SnapshotSource",
    "TaskState",
    "VerificationPhase",
    "VerificationRecord",
    "VerificationResult",
    "VerifyOutcome",
    "VerifyRequest",
    "VirtualDisk",
    "VirtualDiskSpec",
    "VirtualDiskStatus",
    "VolumeMode",
    "make_handle",
    "merge_patch",
    "node_task_label",
    "parse_handle",
]
