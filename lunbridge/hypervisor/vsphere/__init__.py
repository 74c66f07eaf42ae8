"""The vSphere implementation of the `Hypervisor` protocol, through pyvmomi.

Modules, from the bottom up: `config` (the Secret), `tls` (how vCenter's certificate is
trusted), `refs` and `slots` (pure rules: VM references, portals, free SCSI units, which RDM
is which LUN), `_vmomi` (the only importer of pyVmomi), `faults` (pyvmomi errors → the
lunbridge error set), `session` (login, re-login, worker pool, tasks), `inventory` and
`rdm` (blocking steps), `client` (`VSphere`: ordering, locks, coalesced rescans).
"""

from lunbridge.hypervisor.vsphere.client import VSphere
from lunbridge.hypervisor.vsphere.config import VSphereConfig

__all__ = ["VSphere", "VSphereConfig"]
