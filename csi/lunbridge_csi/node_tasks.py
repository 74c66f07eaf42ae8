"""The node plugin's workers for the node channel (`lunbridge_csi.channel`), built on the same
guest helpers, runner, limits and root as the Node service.

- `VerifySnapshotClone` (`lunbridge.models.diskverification`): find the clone the operator
  attached by its NAA (the targeted rescan and the refusal of a device whose NAA differs, as
  NodeStageVolume does; on a node that logs in itself, the login to its target and the scan of
  its LUN id, without CHAP), check it (`guest.verify`), and take its SCSI device off the guest
  whatever the outcome (and the session, when no staged volume uses it), so the operator's
  detach leaves nothing behind here.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence

from lunbridge.models import AttachMode, NodeTask, PublishContext, VerifyRequest
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
        published = PublishContext.from_dict(request.context)
        what = f"the clone of DiskVerification {name}"
        session = None
        if published.mode is AttachMode.INITIATOR:  # the verifier logs in itself
            async with node.sessions_lock:
                session, _, device = await attached.find_logged_in_disk(
                    node.root, node.iscsiadm, published, None, node.device_timeout, what
                )
        else:
            _, device = await attached.find_disk(
                node.root, attached.placement(published), node.device_timeout, what
            )
        try:
            outcome = await verifier.verify(
                f"{node.dev_dir}/{device}", request.check, float(task.timeout_seconds), task.id
            )
        finally:
            await teardown.remove_disks(
                node.runner, node.limits, node.root, node.dev_dir, [device], within=node.device_timeout
            )
            if session is not None:
                await node.log_out_when_unused(session.target, session.portal)
        return outcome.to_result()

    return {VERIFY_TASK: verify_snapshot_clone}
