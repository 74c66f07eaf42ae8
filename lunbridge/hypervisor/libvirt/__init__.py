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

`Libvirt` is imported on first use: the libvirt binding and the libraries it loads cost the
operator about 10 MiB of memory, which a cluster without KVM hosts should not pay.
"""

from __future__ import annotations

from typing import TYPE_CHECKING, Any

from lunbridge.hypervisor.libvirt.config import LibvirtConfig
from lunbridge.hypervisor.libvirt.refs import ID_PREFIX, is_libvirt_id

if TYPE_CHECKING:
    from lunbridge.hypervisor.libvirt.client import Libvirt

__all__ = ["ID_PREFIX", "Libvirt", "LibvirtConfig", "is_libvirt_id"]


def __getattr__(name: str) -> Any:
    if name == "Libvirt":
        from lunbridge.hypervisor.libvirt.client import Libvirt

        return Libvirt
    raise AttributeError(f"module {__name__!r} has no attribute {name!r}")
