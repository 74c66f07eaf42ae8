"""The LunbridgeNode object, typed: what a node's plugin publishes about itself through the node
channel (its attachment mode and its own initiators), and whether the operator accepted those
initiators. One per Node, of the Node's name, written by that node's plugin (spec) and by the
operator (status). The CRD (`crds/lunbridgenodes.lunbridge.io.yaml`) declares the same keys.

An IQN cannot go into NodeGetInfo's topology, and a node in `initiator` mode has no providerID
lunbridge can use, so this object is how the operator learns a node's initiators. A node
publishes for itself only (the chart's ValidatingAdmissionPolicy compares the object's name with
the node its service account token is bound to); an initiator another node published first is
refused (`InitiatorsAccepted` False, reason InitiatorClaimed) and never reaches an igroup.
"""

from __future__ import annotations

from typing import ClassVar

from pydantic import Field

from lunbridge.api import LUNBRIDGE_NODE_KIND
from lunbridge.models._base import Model
from lunbridge.models.conditions import Conditioned
from lunbridge.models.meta import KubeObject
from lunbridge.models.virtualdisk import AttachMode

INITIATORS_ACCEPTED = "InitiatorsAccepted"  # the status condition


class LunbridgeNodeSpec(Model):
    mode: AttachMode
    reason: str = ""  # why the node chose its mode
    iqn: str | None = None
    wwpns: list[str] = Field(default_factory=list)
    provider_id: str | None = Field(default=None, alias="providerID")

    @property
    def initiators(self) -> list[str]:
        return ([self.iqn] if self.iqn else []) + self.wwpns


class LunbridgeNodeStatus(Conditioned):
    observed_generation: int | None = None
    accepted: list[str] = Field(default_factory=list)  # the node's initiators it owns
    claimed: dict[str, str] = Field(default_factory=dict)  # a refused initiator -> the node that has it


class LunbridgeNode(KubeObject):
    kind: ClassVar[str] = LUNBRIDGE_NODE_KIND
    spec: LunbridgeNodeSpec
    status: LunbridgeNodeStatus = LunbridgeNodeStatus()
