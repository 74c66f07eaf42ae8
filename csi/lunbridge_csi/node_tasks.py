"""The node plugin's workers for the node channel (`lunbridge_csi.channel`), built on the same
guest helpers, runner, limits and root as the Node service.

- `VerifySnapshotClone` (`lunbridge.models.diskverification`): find the clone the operator
  attached by its NAA (the targeted rescan and the refusal of a device whose NAA differs, as
  NodeStageVolume does), check it (`guest.verify`), and take its SCSI device off the guest
  whatever the outcome, so the operator's detach leaves nothing behind here.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence

from lunbridge.models import NodeTask, VerifyRequest
from lunbridge.models.diskverification import VERIFY_TASK
from lunbridge_csi.channel import Worker
from lunbridge_csi.guest import attached, teardown
from lunbridge_csi.guest.verify import Verifier
from lunbridge_csi.node import NodeService


def workers(node: NodeService, checks: Mapping[str, Sequence[str]]) -> dict[str, Worker]:
    """Every task type this node plugin serves, by name."""
    verifier = Verifier(node.runner, node.limits, checks, node.state_dir / "verify", root=node.root)

    async def verify_snapshot_clone(task: NodeTask, name: str) -> dict[str, str]:
        request = VerifyRequest.from_params(task.params)
        where = attached.placement(request.context)
        _, device = await attached.find_disk(
            node.root, where, node.device_timeout, f"the clone of DiskVerification {name}"
        )
        try:
            outcome = await verifier.verify(
                f"{node.dev_dir}/{device}", request.check, float(task.timeout_seconds), task.id
            )
        finally:
            await teardown.remove_disks(
                node.runner, node.limits, node.root, node.dev_dir, [device], within=node.device_timeout
            )
        return outcome.to_result()

    return {VERIFY_TASK: verify_snapshot_clone}
