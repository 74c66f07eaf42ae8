"""What initiators see of a backend's LUNs, asked over iSCSI whatever the backend: discovery
(SendTargets) on every portal under a chosen IQN, then each LUN's NAA. A backend that serves one
target per SVM (ONTAP) or one per igroup (tgt, the lab's ONTAP simulator) looks the same here."""

from __future__ import annotations

from dataclasses import dataclass

from tests.integration.storage import iscsi


@dataclass(frozen=True)
class Where:
    portal: str
    target: str
    lun: int


def luns_by_naa(portals: list[str], initiator: str) -> dict[str, Where]:
    """NAA → where `initiator` reaches that LUN, over every LUN it may use on `portals`."""
    found: dict[str, Where] = {}
    for portal in portals:
        for target, luns in iscsi.visible_luns(portal, initiator).items():
            for lun in luns:
                found[iscsi.identity(portal, initiator, target, lun).naa] = Where(portal, target, lun)
    return found


def reach(portals: list[str], initiator: str, naa: str) -> Where:
    found = luns_by_naa(portals, initiator)
    assert naa in found, f"{initiator} does not see {naa}; it sees {sorted(found)}"
    return found[naa]


def capacity(where: Where, initiator: str) -> int:
    return iscsi.capacity(where.portal, initiator, where.target, where.lun)


def write(where: Where, initiator: str, byte: int, offset: int = 0, length: int = 1 << 20) -> None:
    iscsi.write_pattern(where.portal, initiator, where.target, where.lun, byte, offset, length)


def holds(where: Where, initiator: str, byte: int, offset: int = 0, length: int = 1 << 20) -> bool:
    return iscsi.has_pattern(where.portal, initiator, where.target, where.lun, byte, offset, length)
