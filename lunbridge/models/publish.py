"""The CSI publish context: what ControllerPublishVolume hands the node plugin, built from a
VirtualDisk's status and read by NodeStageVolume. Only what the node reads is published.

Keys (all values strings, as CSI carries them):
- always: `mode` (`hypervisor` | `initiator`), `naa` (`naa.<hex>`, checked against the
  disk's VPD page 0x83 before anything is written);
- `hypervisor`: `pciSlot` (the guest SCSI controller's PCI slot on bus 0) and `guestAddress`
  (`channel:target:lun` on that controller's SCSI host: the one address rescanned);
- `initiator`: `targetIqn`, `portals` (comma-separated `host:port`), `lunId`.

Upgrades: contexts written before `mode` existed (VolumeAttachments made by earlier releases)
carry `naa`, `pciSlot`, `guestAddress` and the unread `controllerKey`, `busNumber`,
`unitNumber`, `target`; they read as `hypervisor` contexts.
"""

from __future__ import annotations

import re
from collections.abc import Mapping
from dataclasses import dataclass

from lunbridge.errors import InvalidArgument
from lunbridge.models.virtualdisk import AttachMode, VirtualDiskStatus
from lunbridge.san import ScsiAddress, iqn, naa

KEY_MODE = "mode"
KEY_NAA = "naa"
KEY_PCI_SLOT = "pciSlot"
KEY_GUEST_ADDRESS = "guestAddress"
KEY_TARGET_IQN = "targetIqn"
KEY_PORTALS = "portals"
KEY_LUN_ID = "lunId"


MAX_DIGITS = 9  # a PCI slot or a LUN id; more digits are no number the node can use


def _int(context: Mapping[str, str], key: str) -> int:
    text = context[key].strip()
    # ASCII digits only: str.isdigit() also takes '²' and other digits int() refuses
    if not (text.isascii() and text.isdigit()) or len(text) > MAX_DIGITS:
        raise InvalidArgument(f"publish_context {key} {text[:40]!r} is not a number")
    return int(text)


def _naa(context: Mapping[str, str]) -> str:
    try:
        return naa(context[KEY_NAA])
    except InvalidArgument as exc:
        raise InvalidArgument(f"publish_context {KEY_NAA}: {exc}") from None


def _address(context: Mapping[str, str]) -> ScsiAddress:
    text = context[KEY_GUEST_ADDRESS]
    try:
        if not text.isascii():  # ScsiAddress.parse would take '¹' for a digit
            raise ValueError(text)
        return ScsiAddress.parse(text)
    except (InvalidArgument, ValueError):
        raise InvalidArgument(
            f"publish_context {KEY_GUEST_ADDRESS} {text[:40]!r} is not 'channel:target:lun' (three integers)"
        ) from None


_PORTAL = re.compile(r"^(?:\[[0-9A-Fa-f:.]+\]|[A-Za-z0-9][A-Za-z0-9.-]*):([0-9]{1,5})$")


def _portal(text: str) -> str:
    found = _PORTAL.match(text)
    if not found or not 0 < int(found.group(1)) < 65536:
        raise InvalidArgument(f"publish_context {KEY_PORTALS}: {text[:60]!r} is not host:port")
    return text


def _target(context: Mapping[str, str]) -> str:
    """The target's name as the storage server spells it (checked, not rewritten)."""
    text = context[KEY_TARGET_IQN].strip()
    try:
        iqn(text)
    except InvalidArgument as exc:
        raise InvalidArgument(f"publish_context {KEY_TARGET_IQN}: {exc}") from None
    return text


def _required(context: Mapping[str, str], mode: AttachMode, keys: tuple[str, ...]) -> None:
    missing = [key for key in keys if not context.get(key)]
    if missing:
        raise InvalidArgument(
            f"publish_context lacks {', '.join(missing)} (a {mode.value} attachment needs "
            f"{', '.join(keys)}; ControllerPublishVolume puts them there)"
        )


@dataclass(frozen=True)
class PublishContext:
    mode: AttachMode
    naa: str
    pci_slot: int | None = None
    guest_address: ScsiAddress | None = None
    target_iqn: str | None = None
    portals: tuple[str, ...] = ()
    lun_id: int | None = None

    def to_dict(self) -> dict[str, str]:
        context = {KEY_MODE: self.mode.value, KEY_NAA: self.naa}
        if self.mode is AttachMode.HYPERVISOR:
            if self.pci_slot is not None:  # a hypervisor may not report it; the node then says so
                context[KEY_PCI_SLOT] = str(self.pci_slot)
            context[KEY_GUEST_ADDRESS] = str(self.guest_address)
        else:
            context.update({KEY_TARGET_IQN: self.target_iqn or "", KEY_PORTALS: ",".join(self.portals),
                            KEY_LUN_ID: str(self.lun_id)})  # fmt: skip
        return context

    @classmethod
    def from_dict(cls, context: Mapping[str, str]) -> PublishContext:
        """Read (and check) a publish context; InvalidArgument names the bad key."""
        text = context.get(KEY_MODE) or AttachMode.HYPERVISOR.value
        try:
            mode = AttachMode(text)
        except ValueError:
            known = ", ".join(m.value for m in AttachMode)
            raise InvalidArgument(f"publish_context mode {text!r} is not one of {known}") from None
        if not context.get(KEY_NAA):
            raise InvalidArgument("publish_context lacks naa (ControllerPublishVolume puts it there)")
        if mode is AttachMode.HYPERVISOR:
            _required(context, mode, (KEY_PCI_SLOT, KEY_GUEST_ADDRESS))
            return cls(mode, _naa(context), pci_slot=_int(context, KEY_PCI_SLOT),
                       guest_address=_address(context))  # fmt: skip
        _required(context, mode, (KEY_TARGET_IQN, KEY_PORTALS, KEY_LUN_ID))
        portals = tuple(_portal(p.strip()) for p in context[KEY_PORTALS].split(","))
        return cls(mode, _naa(context), target_iqn=_target(context), portals=portals,
                   lun_id=_int(context, KEY_LUN_ID))  # fmt: skip

    @classmethod
    def from_status(cls, status: VirtualDiskStatus) -> PublishContext:
        """What the node needs of an attached disk's status; InvalidArgument if it lacks it."""
        attachment, lun = status.attachment, status.lun
        if attachment is None or lun is None or not lun.naa:
            raise InvalidArgument("the disk is not attached: its status has no attachment or NAA")
        if attachment.mode is AttachMode.HYPERVISOR:
            if attachment.guest_address is None:
                raise InvalidArgument(
                    "status.attachment lacks guestAddress: the guest could not find the disk"
                )
            return cls(attachment.mode, lun.naa, pci_slot=attachment.pci_slot,
                       guest_address=ScsiAddress.parse(attachment.guest_address))  # fmt: skip
        return cls(attachment.mode, lun.naa, target_iqn=attachment.target_iqn,
                   portals=tuple(attachment.portals), lun_id=attachment.lun_id)  # fmt: skip
