"""The fakes wired together as the operator sees them in a cluster: a 2-host cluster `c1`
(esx-1, esx-2) and a standalone host esx-3, one Node per host (node-a, node-b, node-c) whose
VM runs there, one FakeStorage per backend name, the Services the handlers use, and a
FakeOperator watching the FakeKube. It exists so that every test starts from the same small
world in one line, and says what it does in the user's words (create, patch, delete a disk).
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any

from lunbridge.api import API_VERSION, LUNBRIDGE_NODE_PLURAL, VIRTUAL_DISK_PLURAL
from lunbridge.errors import NotFound
from lunbridge.hypervisor.base import Scope, Vm
from lunbridge.hypervisor.vsphere.slots import RdmAttachment
from lunbridge.models import ObjectMeta, VirtualDisk, VirtualDiskSpec
from lunbridge.san import Transport
from lunbridge.storage.base import Lun
from lunbridge.storage.factory import Backends
from lunbridge_operator import naming
from lunbridge_operator.reconcile.services import Services
from tests.fakes.hypervisor import RDM_UNITS, FakeHypervisor
from tests.fakes.kube import FakeKube
from tests.fakes.operator import FakeOperator
from tests.fakes.storage import FakeStorage

HOSTS = {"esx-1": "c1", "esx-2": "c1", "esx-3": None}
NODES = {"node-a": "esx-1", "node-b": "esx-2", "node-c": "esx-3"}


@dataclass
class Lab:
    kube: FakeKube
    hypervisor: FakeHypervisor
    storages: dict[str, FakeStorage]
    services: Services
    operator: FakeOperator
    vms: dict[str, Vm] = field(default_factory=dict)  # node name -> its VM

    @classmethod
    def build(
        cls,
        backends: tuple[str, ...] = ("lab",),
        *,
        max_disks: int = len(RDM_UNITS),
        default_scope: Scope | None = None,
        running: bool = True,
    ) -> Lab:
        """The world above; the first backend is the default."""
        storages = {
            name: FakeStorage(name, portal=f"192.0.2.{10 + i}:3260") for i, name in enumerate(backends)
        }

        def sees(initiators: Any, naa: str) -> bool:
            return any(storage.exposes(naa, list(initiators)) for storage in storages.values())

        hypervisor = FakeHypervisor(max_disks=max_disks, sees=sees)
        for host, cluster in HOSTS.items():
            hypervisor.add_host(host, cluster)
        kube = FakeKube()
        services = Services(
            hypervisor=hypervisor,
            backends=Backends(dict(storages), backends[0]),
            kube=kube,
            transport=Transport.ISCSI,
            default_scope=default_scope,
            portals={name: storage.portal for name, storage in storages.items()},
        )
        lab = cls(kube, hypervisor, storages, services, FakeOperator(kube, services, running=running))
        for node, host in NODES.items():
            lab.add_node(node, host)
        return lab

    @property
    def storage(self) -> FakeStorage:
        """The default backend."""
        return self.storages[self.services.backends.default]

    def add_node(self, name: str, host: str) -> Vm:
        vm = self.hypervisor.add_vm(f"{name}-vm", host)
        self.kube.add_node(name, self.hypervisor.provider_id(vm))
        self.vms[name] = vm
        return vm

    async def publish_node(self, name: str, iqn: str | None, mode: str = "initiator",
                           created: str = "2026-11-29T10:00:00Z") -> None:  # fmt: skip
        """What node `name`'s plugin publishes (its LunbridgeNode), and the operator's claims."""
        from lunbridge_operator.reconcile import lunbridgenode

        spec = {"mode": mode, "iqn": iqn}
        try:
            await self.kube._patch_spec(LUNBRIDGE_NODE_PLURAL, name, spec)
        except NotFound:
            body = {"apiVersion": API_VERSION, "kind": "LunbridgeNode",
                    "metadata": {"name": name, "creationTimestamp": created}, "spec": spec}  # fmt: skip
            await self.kube.create(LUNBRIDGE_NODE_PLURAL, body)
        await lunbridgenode.reconcile_all(self.services)

    def provider_id(self, node: str) -> str:
        return self.hypervisor.provider_id(self.vms[node])

    def rdms(self, node: str) -> list[RdmAttachment]:
        return self.hypervisor.rdms(self.vms[node])

    # --- what a user does -------------------------------------------------------------------
    async def create_disk(self, name: str, size: str = "1Gi", **spec: Any) -> VirtualDisk:
        body = VirtualDisk(metadata=ObjectMeta(name=name), spec=VirtualDiskSpec(size=size, **spec)).body()
        await self.kube.create(VIRTUAL_DISK_PLURAL, body)
        return self.disk(name)

    async def patch(self, name: str, **spec: Any) -> VirtualDisk:
        await self.kube.patch_spec(name, VirtualDiskSpec.patch(**spec))
        return self.disk(name)

    async def delete(self, name: str) -> None:
        await self.kube.delete(name)

    # --- what a user sees -------------------------------------------------------------------
    def disk(self, name: str) -> VirtualDisk:
        return self.kube.disk(name)

    def lun(self, name: str, backend: str | None = None) -> Lun:
        """The LUN of VirtualDisk `name` on its backend (KeyError if there is none)."""
        uid = self.kube.disks[name]["metadata"]["uid"]
        return self.storages[backend or self.services.backends.default].luns[naming.lun_name(uid)]
