"""The libvirt implementation of the `Hypervisor` protocol: KVM hosts, LUNs passed through to
the guest over QEMU's own iSCSI initiator.

Modules, from the bottom up: `config` (URI, the host's IQN, limits), `refs` (pure: VM
references, portals, the ids and the disk alias this layer uses), `domain` and `slots` (pure:
a domain's SCSI devices from its XML, the XML lunbridge adds, free addresses), `nodedev` (pure:
FC ports from node-device XML), `discovery` (which target/LUN carries an NAA, through
libiscsi's tools as the host's IQN), `_libvirt` (the only importer of the libvirt binding),
`faults` (libvirt errors → the lunbridge error set), `session` (connection, worker pool),
`inventory` (blocking steps), `client` (`Libvirt`: ordering, locks, coalesced discovery).

Ids: `Vm.id` is `libvirt:<domain uuid>`, `Host.id` is `libvirt:<uri>` (see `refs`);
`Attachment.target` carries the SCSI target id (the guest sees a disk at H:bus:target:unit).
"""

from lunbridge.hypervisor.libvirt.client import Libvirt
from lunbridge.hypervisor.libvirt.config import LibvirtConfig
from lunbridge.hypervisor.libvirt.refs import ID_PREFIX, is_libvirt_id

__all__ = ["ID_PREFIX", "Libvirt", "LibvirtConfig", "is_libvirt_id"]
