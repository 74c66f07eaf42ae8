"""What the controller reports of an existing volume (ControllerGetVolume, ListVolumes): the
Volume itself, the node it is published to, and its condition, all read from the VirtualDisk.

The volume condition is the operator's `Healthy` condition (`lunbridge_operator.reconcile.health`),
which its periodic re-check keeps along the chain storage backend -> LUN -> map to the igroup ->
hosts of the disk's scope -> RDM on the VM (or the node's own login). Abnormal when a link broke,
with the link's name first in the message (`MapMissing: LUN ... is mapped to no igroup ...`), so
the external health monitor's Event on the PVC says where to look. The controller never asks the
storage server or the hypervisor itself: it reports what the operator last verified, at most one
re-check interval old.
"""

from __future__ import annotations

from lunbridge.models import AttachMode, VirtualDisk
from lunbridge.models import ConditionType as Cond
from lunbridge_csi._proto import csi_pb2
from lunbridge_csi.volume_rules import capacity_of, volume_context

NOT_VERIFIED = "not verified yet: the operator has not made or checked this volume's LUN and its links"


def volume_of(disk: VirtualDisk) -> csi_pb2.Volume:
    """The CSI Volume of `disk`: its id, capacity (bytes, the LUN's once provisioned) and context."""
    return csi_pb2.Volume(
        volume_id=disk.name, capacity_bytes=capacity_of(disk), volume_context=volume_context(disk)
    )


def published_node_ids(disk: VirtualDisk) -> list[str]:
    """The CSI node ids the disk is attached to (at most one): a guest's is its Node's providerID
    (NodeGetInfo's node_id there), a node that logs in itself has its Node name. A publication
    the operator has not carried out yet is not listed (the attacher's publish is still waiting)."""
    attachment = disk.status.attachment
    if attachment is None or not disk.status.is_true(Cond.ATTACHED):
        return []
    if attachment.mode is AttachMode.HYPERVISOR and attachment.provider_id:
        return [attachment.provider_id]
    return [attachment.node]


def volume_condition(disk: VirtualDisk) -> csi_pb2.VolumeCondition:
    """Abnormal when the operator's `Healthy` condition is False: `<link>: <what was found>`.
    Normal otherwise, with what the operator verified (or that it has not yet)."""
    healthy = disk.status.condition(Cond.HEALTHY)
    if healthy is None:
        return csi_pb2.VolumeCondition(abnormal=False, message=NOT_VERIFIED)
    if healthy.true:
        return csi_pb2.VolumeCondition(abnormal=False, message=healthy.message or healthy.reason or "")
    return csi_pb2.VolumeCondition(abnormal=True, message=f"{healthy.reason}: {healthy.message}")
