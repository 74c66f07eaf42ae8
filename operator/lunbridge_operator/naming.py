"""Deterministic names, so a retried step finds what the first try made.

A LUN is named from its VirtualDisk's UID (a re-created VirtualDisk of the same name is a new
disk); an initiator group from the hypervisor host or cluster it serves, or from the node that
logs in with its own initiators.
"""

from __future__ import annotations

import hashlib
import re

from lunbridge.hypervisor.base import Host, Scope

_NOT_NAME = re.compile(r"[^a-z0-9-]+")


def lun_name(uid: str) -> str:
    return f"vd-{uid.lower()}"


CLONE_SNAPSHOT_PREFIX = "clone-src-"


def clone_snapshot_name(uid: str) -> str:
    """The snapshot a clone of another disk is copied from (scaffolding, gone once copied)."""
    return f"{CLONE_SNAPSHOT_PREFIX}{uid.lower()}"


def _label(text: str, limit: int = 50) -> str:
    """A lowercase DNS label from any hypervisor name; long or lossy names get a hash suffix."""
    label = _NOT_NAME.sub("-", text.lower()).strip("-")
    if label != text or len(label) > limit:
        digest = hashlib.sha256(text.encode()).hexdigest()[:8]
        label = f"{label[: limit - 9].rstrip('-')}-{digest}"
    return label or hashlib.sha256(text.encode()).hexdigest()[:8]


def igroup_name(host: Host, scope: Scope) -> str:
    """The InitiatorGroup (and storage igroup) serving `host`, or its whole cluster."""
    if scope is Scope.CLUSTER and host.cluster:
        return f"cluster-{_label(host.cluster)}"
    return f"host-{_label(host.name)}"


NODE_IGROUP_PREFIX = "node-"


def node_igroup_name(node_name: str) -> str:
    """The InitiatorGroup (and storage igroup) of a node that logs in with its own initiators."""
    return f"{NODE_IGROUP_PREFIX}{_label(node_name)}"


SNAPSHOT_PREFIX = "ds-"


def snapshot_name(uid: str) -> str:
    """The storage snapshot of a DiskSnapshot (named from its UID, like a disk's LUN)."""
    return f"{SNAPSHOT_PREFIX}{uid.lower()}"


def group_member_snapshot_name(group_uid: str, disk_uid: str) -> str:
    """The storage snapshot of one disk in a DiskGroupSnapshot."""
    return "dg-" + hashlib.sha256(f"{group_uid.lower()}/{disk_uid.lower()}".encode()).hexdigest()[:32]


def group_member_name(group: str, disk: str) -> str:
    """The member DiskSnapshot of `disk` in group `group` (a DNS subdomain)."""
    name = f"{group}-{disk}"
    if len(name) <= 253:
        return name
    return f"{group[:200]}-{hashlib.sha256(name.encode()).hexdigest()[:16]}"
