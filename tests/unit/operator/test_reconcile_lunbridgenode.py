"""Who owns an initiator: the node accepted with it keeps it, a new one goes to the node that
published it first; every other node publishing it is refused it (InitiatorsAccepted False,
reason InitiatorClaimed, the owner named), and a node that drops it frees it for the next."""

from __future__ import annotations

from typing import Any

from lunbridge.api import API_VERSION, LUNBRIDGE_NODE_PLURAL
from lunbridge_operator.reconcile import lunbridgenode
from tests.fakes import Lab

X, Y, Z = "iqn.2004-10.org.lab:x", "iqn.2004-10.org.lab:y", "iqn.2004-10.org.lab:z"


async def _publish(lab: Lab, name: str, created: str, iqn: str) -> None:
    body = {"apiVersion": API_VERSION, "kind": "LunbridgeNode",
            "metadata": {"name": name, "creationTimestamp": created},
            "spec": {"mode": "initiator", "iqn": iqn}}  # fmt: skip
    await lab.kube.create(LUNBRIDGE_NODE_PLURAL, body)


def _accepted(lab: Lab, name: str) -> dict[str, Any]:
    status = lab.kube.read(LUNBRIDGE_NODE_PLURAL, name)["status"]
    condition = next(c for c in status["conditions"] if c["type"] == "InitiatorsAccepted")
    return {
        "status": condition["status"],
        "reason": condition["reason"],
        "claimed": status.get("claimed", {}),
    }


async def test_the_first_publisher_owns_an_initiator_and_a_dropped_one_goes_to_the_next() -> None:
    lab = Lab.build()
    await _publish(lab, "node-b", "2026-11-29T10:00:02Z", X)  # later, though listed first by name
    await _publish(lab, "node-a", "2026-11-29T10:00:01Z", X)
    await _publish(lab, "node-c", "2026-11-29T10:00:03Z", Y)
    refused = await lunbridgenode.reconcile_all(lab.services)
    assert refused == {"node-b": {X: "node-a"}}
    assert _accepted(lab, "node-a") == {"status": "True", "reason": "Accepted", "claimed": {}}
    assert _accepted(lab, "node-b") == {
        "status": "False",
        "reason": "InitiatorClaimed",
        "claimed": {X: "node-a"},
    }
    assert _accepted(lab, "node-c")["status"] == "True"

    await lab.kube._patch_spec(LUNBRIDGE_NODE_PLURAL, "node-a", {"iqn": Z})  # node-a's IQN changed
    assert await lunbridgenode.reconcile_all(lab.services) == {}
    assert _accepted(lab, "node-b") == {"status": "True", "reason": "Accepted", "claimed": {}}
    await _publish(lab, "node-0", "2026-11-29T10:00:00Z", Z)  # older, but node-a holds Z already
    assert await lunbridgenode.reconcile_all(lab.services) == {"node-0": {Z: "node-a"}}
    writes = len([c for c in lab.kube.calls if c.method == "patch_status"])
    await lunbridgenode.reconcile_all(lab.services)
    assert len([c for c in lab.kube.calls if c.method == "patch_status"]) == writes, (
        "it wrote unchanged statuses"
    )
