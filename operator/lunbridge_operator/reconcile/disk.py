"""One VirtualDisk as a reconcile sees it (`Tracked`: the typed spec, a working copy of the
status, the one way it is written), and the storage backend the disk lives on."""

from __future__ import annotations

from dataclasses import dataclass

from lunbridge.api import VIRTUAL_DISK_PLURAL
from lunbridge.errors import InvalidArgument
from lunbridge.models import AttachMode, LunStatus, Phase, VirtualDiskSpec, VirtualDiskStatus
from lunbridge.storage.base import StorageBackend
from lunbridge_operator import naming
from lunbridge_operator.reconcile.services import Services
from lunbridge_operator.reconcile.tracked import Tracked

KIND = "VirtualDisk"


@dataclass
class Disk(Tracked[VirtualDiskSpec, VirtualDiskStatus]):
    plural = VIRTUAL_DISK_PLURAL
    spec_model = VirtualDiskSpec
    status_model = VirtualDiskStatus

    spec: VirtualDiskSpec  # never None: an unreadable spec reads as empty (`spec_error` says why)

    @classmethod
    def unread_spec(cls) -> VirtualDiskSpec:
        return VirtualDiskSpec.model_construct(size="")

    @property
    def made_anything(self) -> bool:
        """The status records a LUN (so something may exist on a backend)."""
        return self.status.lun is not None and bool(self.status.lun.name)

    @property
    def lun_name(self) -> str:
        return naming.lun_name(self.uid)

    @property
    def lun(self) -> LunStatus:
        if self.status.lun is None:
            self.status.lun = LunStatus()
        return self.status.lun

    @property
    def settled(self) -> bool:
        """Ready for the current generation: a periodic re-check keeps it Ready."""
        return self.status.phase is Phase.READY and self.status.observed_generation == self.generation

    def backend(self, svc: Services) -> tuple[str, StorageBackend]:
        """The backend the disk lives on: the one its status records (a LUN never moves), else
        `spec.backend`, else the default. InvalidArgument when the name is not configured."""
        recorded = svc.backends.recorded(self.status.lun.backend if self.status.lun else None)
        if recorded and self.spec.backend and recorded != self.spec.backend:
            raise InvalidArgument(
                f"spec.backend {self.spec.backend!r} differs from backend {recorded!r} the LUN is on"
            )
        if recorded:
            return svc.backends.get(recorded, "status.lun.backend")
        return svc.backends.get(self.spec.backend)

    def left_behind(self) -> list[str]:
        """What status records of this disk on a storage server or a hypervisor, in words."""
        found: list[str] = []
        lun, attachment = self.status.lun, self.status.attachment
        if lun is not None and lun.name:
            found.append(f"LUN {lun.name} ({lun.naa or 'no NAA'}) on storage backend {lun.backend}")
        if self.status.initiator_group:
            found.append(f"its map to igroup {self.status.initiator_group}")
        if attachment is not None and attachment.mode is AttachMode.INITIATOR:
            found.append(f"node {attachment.node}'s login to {attachment.target_iqn or 'its target'}")
        elif attachment is not None:
            found.append(f"an RDM on VM {attachment.vm} ({attachment.provider_id})")
        return found
