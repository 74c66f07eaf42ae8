"""One VirtualDisk as a reconcile sees it: the typed spec, a working copy of the status, the
storage backend the disk lives on, and the one way its status is written (a merge patch of
what changed since the last write, so keys an earlier release wrote are removed too)."""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any

from lunbridge.api import VIRTUAL_DISK_PLURAL
from lunbridge.errors import InvalidArgument
from lunbridge.models import ConditionType, LunStatus, Phase, VirtualDiskSpec, VirtualDiskStatus, merge_patch
from lunbridge.storage.base import StorageBackend
from lunbridge_operator import naming
from lunbridge_operator.reconcile.services import Services

KIND = "VirtualDisk"


@dataclass
class Disk:
    """`status` is a working copy; `written` is the status as the API server holds it."""

    name: str
    uid: str
    generation: int | None
    spec: VirtualDiskSpec
    status: VirtualDiskStatus = field(default_factory=VirtualDiskStatus)
    written: dict[str, Any] = field(default_factory=dict)
    spec_error: InvalidArgument | None = None  # the spec could not be read: `spec` is empty

    @classmethod
    def from_object(cls, name: str, uid: str, generation: int | None, spec: Any, status: Any) -> Disk:
        """From the object's parts. A malformed spec is kept as `spec_error` (naming the field),
        for the steps to report; an unreadable status reads as empty (the steps find what
        exists by name)."""
        raw = {k: v for k, v in dict(status or {}).items() if k != "kopf"}
        try:
            typed = VirtualDiskStatus.from_dict(raw, "status")
        except InvalidArgument:
            typed = VirtualDiskStatus()
        try:
            return cls(name, uid, generation, VirtualDiskSpec.from_dict(dict(spec or {}), "spec"), typed, raw)
        except InvalidArgument as exc:
            return cls(
                name, uid, generation, VirtualDiskSpec.model_construct(size=""), typed, raw, spec_error=exc
            )

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
        if attachment is not None:
            found.append(f"an RDM on VM {attachment.vm} ({attachment.provider_id})")
        return found

    def condition(self, kind: ConditionType, state: bool | None, reason: str, message: str) -> None:
        self.status.set_condition(kind, state, reason, message, self.generation)

    async def save(self, svc: Services) -> None:
        """Write what changed in status since the last write (nothing if nothing did)."""
        wanted = self.status.to_dict()
        patch = merge_patch(self.written, wanted)
        if patch:
            await svc.kube.patch_status(VIRTUAL_DISK_PLURAL, self.name, patch)
            self.written = wanted
