"""The DiskVerification object, typed: an action that proves a DiskSnapshot can be restored
(SnapManager's backup verification). The operator clones the snapshot into a throwaway
VirtualDisk attached to the verifier node's VM; that node's plugin finds the clone by its NAA,
replays its journal (a crash-consistent cut has an unreplayed one), runs the read-only checker
of its filesystem (`e2fsck -fn`, `xfs_repair -n`) or a check the node plugin was configured
with, and reports; the operator then deletes the clone and records the outcome here and as the
snapshot's Verified condition. One object is one verification, done once. The CRD
(`crds/diskverifications.lunbridge.io.yaml`) declares the same keys.

`VerifyRequest` / `VerifyOutcome` are the node task's params and result (`nodetask.py`).
"""

from __future__ import annotations

import enum
from typing import ClassVar

from pydantic import Field

from lunbridge.api import DISK_VERIFICATION_KIND
from lunbridge.models._base import Model
from lunbridge.models.conditions import Conditioned
from lunbridge.models.meta import KubeObject
from lunbridge.models.nodetask import NodeReport, NodeTask
from lunbridge.models.publish import PublishContext

VERIFY_TASK = "VerifySnapshotClone"  # NodeTask.type
DEFAULT_TIMEOUT_SECONDS = 900
SUMMARY_LIMIT = 1024  # characters of the checker's output kept in status


class VerificationPhase(enum.StrEnum):
    PENDING = "Pending"
    CLONING = "Cloning"  # the clone VirtualDisk is made and attached to the verifier's VM
    CHECKING = "Checking"  # the verifier node plugin checks it
    CLEANING = "Cleaning"  # the clone is detached, unmapped and deleted
    COMPLETED = "Completed"
    FAILED = "Failed"  # lunbridge could not verify (not a damaged snapshot: that is Completed)


class VerificationResult(enum.StrEnum):
    PASSED = "Passed"
    FAILED = "Failed"
    NOT_VERIFIABLE = "NotVerifiable"


class DiskVerificationSpec(Model):
    snapshot: str
    verifier_node: str
    check: str | None = None  # a check the verifier's node plugin names in its configuration
    timeout_seconds: int = Field(default=DEFAULT_TIMEOUT_SECONDS, ge=30, le=86400)


class DiskVerificationStatus(Conditioned):
    phase: VerificationPhase | None = None
    message: str | None = None
    observed_generation: int | None = None
    start_time: str | None = None
    completion_time: str | None = None
    result: VerificationResult | None = None
    checker: str | None = None  # the command that decided it, as run
    filesystem: str | None = None
    summary: str | None = None
    duration_seconds: float | None = None  # the check on the node, journal replay included
    clone_disk: str | None = None
    clone_naa: str | None = None
    node_task: NodeTask | None = None
    node_report: NodeReport | None = None

    @property
    def done(self) -> bool:
        return self.phase in (VerificationPhase.COMPLETED, VerificationPhase.FAILED)


class DiskVerification(KubeObject):
    kind: ClassVar[str] = DISK_VERIFICATION_KIND
    spec: DiskVerificationSpec
    status: DiskVerificationStatus = DiskVerificationStatus()


class VerifyRequest(Model):
    """What the verifier node needs: where the clone is attached (the publish context's keys),
    the source disk's declared fsType and volumeMode (hints: the disk itself decides), and the
    name of a configured check, if any."""

    context: dict[str, str]
    fs_type: str | None = None
    volume_mode: str | None = None
    check: str | None = None

    def to_params(self) -> dict[str, str]:
        params = {f"context.{k}": v for k, v in self.context.items()}
        for key, value in (("fsType", self.fs_type), ("volumeMode", self.volume_mode), ("check", self.check)):
            if value:
                params[key] = value
        return params

    @classmethod
    def from_params(cls, params: dict[str, str]) -> VerifyRequest:
        context = {k.removeprefix("context."): v for k, v in params.items() if k.startswith("context.")}
        PublishContext.from_dict(context)  # InvalidArgument naming the bad key
        return cls(context=context, fs_type=params.get("fsType"), volume_mode=params.get("volumeMode"),
                   check=params.get("check"))  # fmt: skip


class VerifyOutcome(Model):
    """The verifier node's answer: the result, the checker and its summary, the check's time."""

    result: VerificationResult
    reason: str
    summary: str = ""
    checker: str | None = None
    filesystem: str | None = None
    duration_seconds: float = 0.0

    def to_result(self) -> dict[str, str]:
        return {key: str(value) for key, value in self.to_dict().items()}

    @classmethod
    def from_result(cls, result: dict[str, str]) -> VerifyOutcome:
        return cls.from_dict(result, "status.nodeReport.result")
