"""The InitiatorGroup object, typed: which hosts (or nodes) a storage igroup serves, and the
initiators the hypervisor reported for them. Keys as in `crds/initiatorgroups.lunbridge.io.yaml`."""

from __future__ import annotations

from collections.abc import Mapping
from typing import ClassVar

from pydantic import Field

from lunbridge.api import INITIATOR_GROUP_KIND
from lunbridge.hypervisor.base import Scope
from lunbridge.models._base import Model
from lunbridge.models.conditions import Conditioned
from lunbridge.models.meta import KubeObject
from lunbridge.san import Transport
from lunbridge.storage.base import OsType

MANAGED_LABEL = "lunbridge.io/managed-by"
MANAGED_VALUE = "lunbridge-operator"


def managed_by_lunbridge(labels: Mapping[str, str]) -> bool:
    """An InitiatorGroup with these labels was made by the operator for a host or cluster (a
    user's group is left as written)."""
    return labels.get(MANAGED_LABEL) == MANAGED_VALUE


class InitiatorGroupSpec(Model):
    hosts: list[str] = Field(default_factory=list)
    node_names: list[str] = Field(default_factory=list)
    protocol: Transport = Transport.ISCSI
    scope: Scope = Scope.HOST
    os_type: OsType = OsType.VMWARE
    backend: str | None = None


class InitiatorRow(Model):
    """One initiator as the hypervisor reported it."""

    host: str
    adapter: str
    protocol: Transport
    address: str
    node_name: str | None = None  # FC WWNN


class InitiatorGroupStatus(Conditioned):
    storage_name: str | None = None
    backend: str | None = None
    observed_generation: int | None = None
    hosts: list[str] = Field(default_factory=list)
    retained_hosts: list[str] = Field(default_factory=list)  # left the scope, still run a VM of a LUN here
    initiators: list[InitiatorRow] = Field(default_factory=list)
    mapped_luns: int | None = None


class InitiatorGroup(KubeObject):
    """A whole InitiatorGroup object as the API server returns it."""

    kind: ClassVar[str] = INITIATOR_GROUP_KIND
    spec: InitiatorGroupSpec
    status: InitiatorGroupStatus = InitiatorGroupStatus()

    @property
    def managed(self) -> bool:
        """Made by the operator for a host or cluster (a user's group is left as written)."""
        return managed_by_lunbridge(self.metadata.labels)
