"""Names of the lunbridge Kubernetes API, kept in one place so the operator, the CSI plugin,
the CRDs and the tests cannot drift apart."""

from __future__ import annotations

from typing import Final

GROUP: Final = "lunbridge.io"
VERSION: Final = "v1alpha1"
API_VERSION: Final = f"{GROUP}/{VERSION}"

VIRTUAL_DISK_KIND: Final = "VirtualDisk"
VIRTUAL_DISK_PLURAL: Final = "virtualdisks"
INITIATOR_GROUP_KIND: Final = "InitiatorGroup"
INITIATOR_GROUP_PLURAL: Final = "initiatorgroups"
DISK_SNAPSHOT_KIND: Final = "DiskSnapshot"
DISK_SNAPSHOT_PLURAL: Final = "disksnapshots"
DISK_GROUP_SNAPSHOT_KIND: Final = "DiskGroupSnapshot"
DISK_GROUP_SNAPSHOT_PLURAL: Final = "diskgroupsnapshots"
DISK_RESTORE_KIND: Final = "DiskRestore"
DISK_RESTORE_PLURAL: Final = "diskrestores"
DISK_VERIFICATION_KIND: Final = "DiskVerification"
DISK_VERIFICATION_PLURAL: Final = "diskverifications"
LUNBRIDGE_NODE_KIND: Final = "LunbridgeNode"
LUNBRIDGE_NODE_PLURAL: Final = "lunbridgenodes"

CSI_DRIVER_NAME: Final = "csi.lunbridge.io"
FINALIZER: Final = f"{GROUP}/cleanup"
GROUP_LABEL: Final = f"{GROUP}/group-snapshot"  # on a group's member DiskSnapshots: the group's name
# on a group's member DiskSnapshot (an import): the VirtualDisk it was cut from
SOURCE_DISK_ANNOTATION: Final = f"{GROUP}/source-virtual-disk"
# on a VirtualDisk the operator made to verify a snapshot: the DiskVerification's name
VERIFICATION_LABEL: Final = f"{GROUP}/verification"
# on an object that holds work for a node plugin (status.nodeTask): the node, as `node_task_label`
# spells it; the node plugin watches the objects carrying its own value
NODE_TASK_LABEL: Final = f"{GROUP}/node-task"
# set to "true" on an object being deleted whose teardown cannot finish: lunbridge lets it go
# and posts an Event naming what it leaves behind on the storage server and the hypervisor
FORGET_ANNOTATION: Final = f"{GROUP}/forget"

# providerID prefixes the operator understands (Kubernetes Node spec.providerID).
PROVIDER_VSPHERE: Final = "vsphere://"
PROVIDER_LIBVIRT: Final = "libvirt://"
