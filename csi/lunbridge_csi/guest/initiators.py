"""How this node gets LUNs, and with which initiators: the design's first question, answered on
the node (../shared/DESIGN.md, "Two ways a node gets a LUN").

- `hypervisor`: the OS is a guest whose VM lunbridge can name (a vSphere or libvirt providerID
  from DMI): the operator fetches the *host's* initiators through the hypervisor's API and
  attaches the LUN to the VM.
- `initiator`: anything else (bare metal, a VM of a hypervisor lunbridge does not manage): the
  node logs in with its own initiators: the iSCSI IQN from open-iscsi's
  /etc/iscsi/initiatorname.iscsi, the WWPNs of its FC HBAs from /sys/class/fc_host/*/port_name.

`--attach-mode hypervisor|initiator` forces either (a VM of a hypervisor lunbridge does not
manage looks like a guest; a managed guest may still be given a dedicated iSCSI NIC). Every
function reads files under a root folder, so tests feed it fixture trees.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from lunbridge.errors import InvalidArgument
from lunbridge.hypervisor.detect import Identity, detect
from lunbridge.models import AttachMode, LunbridgeNodeSpec
from lunbridge.san import iqn, wwn

INITIATOR_NAME_FILE = Path("etc/iscsi/initiatorname.iscsi")
FC_HOSTS = Path("sys/class/fc_host")


AUTO = "auto"


@dataclass(frozen=True)
class NodeInitiators:
    """This node's own initiators (empty when it has none of a kind)."""

    iqn: str | None = None
    wwpns: tuple[str, ...] = field(default=())

    @property
    def empty(self) -> bool:
        return self.iqn is None and not self.wwpns


def iscsi_initiator_name(root: Path = Path("/")) -> str | None:
    """The IQN in open-iscsi's initiatorname file (`InitiatorName=...`), or None when there is
    no such file; InvalidArgument when it names something that is not an iSCSI name."""
    try:
        text = (root / INITIATOR_NAME_FILE).read_text()
    except (FileNotFoundError, NotADirectoryError):
        return None
    for line in text.splitlines():
        key, sep, value = line.strip().partition("=")
        if sep and not key.startswith("#") and key.strip() == "InitiatorName":
            try:
                return iqn(value)
            except InvalidArgument as exc:
                raise InvalidArgument(f"/{INITIATOR_NAME_FILE}: {exc}") from None
    return None


def fc_port_names(root: Path = Path("/")) -> tuple[str, ...]:
    """The WWPNs of the node's FC HBAs (`port_name` of each fc_host), sorted; a port whose name
    cannot be read or is not a WWN is skipped."""
    found: set[str] = set()
    folder = root / FC_HOSTS
    for host in sorted(folder.iterdir()) if folder.is_dir() else []:
        try:
            found.add(wwn((host / "port_name").read_text()))
        except (OSError, InvalidArgument):
            continue
    return tuple(sorted(found))


def node_initiators(root: Path = Path("/")) -> NodeInitiators:
    return NodeInitiators(iscsi_initiator_name(root), fc_port_names(root))


@dataclass(frozen=True)
class ModeDecision:
    mode: AttachMode
    reason: str
    identity: Identity


def check_wanted_mode(wanted: str) -> AttachMode | None:
    """`--attach-mode` read: None for `auto`, else the forced mode; InvalidArgument names it."""
    if wanted == AUTO:
        return None
    try:
        return AttachMode(wanted)
    except ValueError:
        known = ", ".join([AUTO, *(m.value for m in AttachMode)])
        raise InvalidArgument(f"--attach-mode {wanted!r} is not one of {known}") from None


def decide_mode(root: Path = Path("/"), wanted: str = AUTO) -> ModeDecision:
    """The node's attachment mode: `wanted` when it is not `auto`; else `hypervisor` for a
    guest whose VM has a providerID lunbridge understands, `initiator` for anything else."""
    identity = detect(root)
    forced = check_wanted_mode(wanted)
    if forced is not None:
        return ModeDecision(forced, f"set by configuration (--attach-mode {forced.value})", identity)
    if identity.provider_id:
        guest = f"a {identity.platform.value} guest: VM {identity.provider_id}"
        return ModeDecision(AttachMode.HYPERVISOR, guest, identity)
    what = (
        "bare metal" if not identity.virtual else f"a {identity.platform.value} guest lunbridge cannot name"
    )
    return ModeDecision(AttachMode.INITIATOR, f"{what}: the node logs in with its own initiators", identity)


def publication(root: Path = Path("/"), wanted: str = AUTO) -> Callable[[], dict[str, Any]]:
    """What the node channel publishes as this node's LunbridgeNode spec, read anew each call
    (the mode is decided once: InvalidArgument for a bad `wanted`, at start)."""
    decided = decide_mode(root, wanted)

    def spec() -> dict[str, Any]:
        found = node_initiators(root)
        published = LunbridgeNodeSpec(
            mode=decided.mode,
            reason=decided.reason,
            iqn=found.iqn,
            wwpns=list(found.wwpns),
            provider_id=decided.identity.provider_id,
        )
        return published.to_dict()

    return spec
