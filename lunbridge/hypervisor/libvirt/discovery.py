"""Which iSCSI target and LUN carry a given NAA id, as a KVM host's initiator sees them.

vSphere lists the LUNs a host sees by canonical name (`naa.…`); libvirt has no such list:
QEMU's initiator logs in per disk, and a disk definition names a target and a LUN number,
never an NAA. So the layer asks the storage server itself, *as the host*: a SendTargets
discovery with the host's IQN against each known portal (`iscsi-ls -s -i IQN
iscsi://portal/`, libiscsi's tool) lists exactly the targets and LUNs masked to that IQN,
then a Device Identification VPD inquiry (page 0x83, `iscsi-inq --evpd=1 --pagecode=131`)
per LUN reads its NAA. A LUN not listed is not masked to the host — the same evidence
vSphere gives after a rescan.

This runs where lunbridge runs, not on the KVM host: the storage server must be reachable
from there, and it accepts the host's initiator name from any address (iSCSI ACLs name
initiators, not addresses; CHAP secrets are not supported here).

`iscsi-inq` prints a binary designator raw between `Designator:[` and `]`, stopping at a
zero byte (it uses printf's %s): the raw bytes may contain `]` or a newline, and an NAA with
a zero byte comes out short. So the NAA's length is taken from its type nibble (5/2/3 →
8 bytes, 6 → 16) and a short one is dropped; an ASCII designator that is exactly an NAA in
hex (tgt's T10 vendor designator is its scsi_id, i.e. the NAA) is taken as a second source.

A tgtd with no target at all resets every connection at once, so a discovery there fails
(Unavailable, retried) rather than listing nothing; a portal is therefore checked by a plain
TCP connection (`check_portal`), and discoveries only run when a LUN is looked for.

The tools run through `lunbridge.command` (asynchronously, each within `timeout` seconds);
no thread is needed.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import re
from dataclasses import dataclass

from lunbridge.command import NotInstalled, Result, Runner, run
from lunbridge.errors import Unavailable
from lunbridge.hypervisor.libvirt.refs import Portal

log = logging.getLogger(__name__)

DIRECT_ACCESS = "DIRECT_ACCESS"  # a disk; LUN 0 of many targets is a STORAGE_ARRAY_CONTROLLER
_NAA_BYTES = {2: 8, 3: 8, 5: 8, 6: 16}  # NAA type nibble → designator length
_TARGET = re.compile(r"^Target:(\S+)\s+Portal:(\S+)")
_LUN = re.compile(r"^Lun:(\d+)\s+Type:(\S+)")
_HEX = re.compile(r"^[0-9a-f]+$")
_CODE_SET = re.compile(rb"Code Set:\((\d+)\)")
_TYPE = re.compile(rb"Designator Type:\((\d+)\)")
_CODE_BINARY, _CODE_ASCII, _CODE_UTF8 = 1, 2, 3
_TYPE_T10, _TYPE_NAA, _TYPE_SCSI_NAME = 1, 3, 8


@dataclass(frozen=True)
class LunAddress:
    """Where the host's initiator finds a LUN: portal, target IQN, LUN number."""

    portal: Portal
    target: str
    lun: int

    def __str__(self) -> str:
        return f"{self.portal.url}/{self.target}/{self.lun}"


@dataclass(frozen=True)
class TargetLuns:
    target: str
    luns: tuple[int, ...]  # the direct-access (disk) LUNs


def parse_ls(text: str) -> list[TargetLuns]:
    """`iscsi-ls -s` output → each target once, with its disk LUNs."""
    found: dict[str, list[int]] = {}
    current: list[int] | None = None
    for line in text.splitlines():
        line = line.strip()
        target = _TARGET.match(line)
        if target:
            current = found.setdefault(target.group(1), [])
            continue
        lun = _LUN.match(line)
        if lun and current is not None and lun.group(2) == DIRECT_ACCESS and int(lun.group(1)) not in current:
            current.append(int(lun.group(1)))
    return [TargetLuns(target, tuple(sorted(luns))) for target, luns in found.items()]


def _naa_of_binary(value: bytes) -> str | None:
    if not value:
        return None
    length = _NAA_BYTES.get(value[0] >> 4)
    return f"naa.{value.hex()}" if length == len(value) else None


def _naa_of_text(value: bytes) -> str | None:
    digits = value.decode("ascii", "replace").strip().lower().removeprefix("naa.")
    if not _HEX.match(digits) or _NAA_BYTES.get(int(digits[0], 16)) != len(digits) / 2:
        return None
    return f"naa.{digits}"


def parse_designators(raw: bytes) -> set[str]:
    """The NAA ids (`naa.<hex>`) in `iscsi-inq --evpd=1 --pagecode=131` output."""
    ids: set[str] = set()
    for block in raw.split(b"DEVICE DESIGNATOR #")[1:]:
        head, sep, rest = block.partition(b"Designator:[")
        end = rest.rfind(b"]")
        if not sep or end < 0:
            continue
        value = rest[:end]
        code_set = _CODE_SET.search(head)
        kind = _TYPE.search(head)
        if code_set is None or kind is None:
            continue
        code, designator = int(code_set.group(1)), int(kind.group(1))
        naa: str | None = None
        if code == _CODE_BINARY and designator == _TYPE_NAA:
            naa = _naa_of_binary(value)
        elif code in (_CODE_ASCII, _CODE_UTF8) and designator in (_TYPE_T10, _TYPE_NAA, _TYPE_SCSI_NAME):
            naa = _naa_of_text(value)
        if naa is not None:
            ids.add(naa)
    return ids


class Libiscsi:
    """libiscsi's command-line tools, run as one initiator, each within `timeout` seconds."""

    def __init__(
        self,
        initiator: str,
        timeout: float,
        ls: str = "iscsi-ls",
        inq: str = "iscsi-inq",
        runner: Runner = run,
    ) -> None:
        self.initiator = initiator
        self.timeout = timeout
        self._ls = ls
        self._inq = inq
        self._runner = runner

    async def _run(self, argv: list[str], what: str) -> Result:
        """The tool's result; a missing tool or one that overruns `timeout` is Unavailable."""
        try:
            return await self._runner(argv, self.timeout)
        except NotInstalled:
            raise Unavailable(
                f"cannot {what}: {argv[0]} is not installed where lunbridge runs; install libiscsi's "
                "tools (Debian: libiscsi-bin)"
            ) from None

    async def check_portal(self, portal: Portal) -> None:
        """Unavailable unless `portal` accepts a TCP connection from here (where discoveries
        run). Only a connection: a storage server with no target yet may drop an iSCSI
        discovery session at once (tgtd resets it), which says nothing about the portal."""
        try:
            _, writer = await asyncio.wait_for(
                asyncio.open_connection(portal.address, portal.port), self.timeout
            )
        except (OSError, TimeoutError) as exc:
            reason = str(exc) or f"no connection within {self.timeout:g}s"
            raise Unavailable(
                f"iSCSI portal {portal} cannot be reached from where lunbridge runs ({reason}); lunbridge "
                "discovers the host's LUNs from here, so the storage network must be reachable"
            ) from None
        writer.close()
        with contextlib.suppress(OSError):  # a server that resets the connection at once
            await writer.wait_closed()

    async def targets(self, portal: Portal) -> list[TargetLuns]:
        """The targets and disk LUNs `portal` shows this initiator (only what is masked to it)."""
        what = f"discover the iSCSI targets of portal {portal} as {self.initiator}"
        done = await self._run([self._ls, "-s", "-i", self.initiator, f"{portal.url}/"], what)
        if done.returncode != 0:
            detail = (done.stderr or done.stdout).strip() or f"exit status {done.returncode}"
            raise Unavailable(f"cannot {what}: {detail}; check that the portal is up and reachable")
        return parse_ls(done.stdout)

    async def lun_ids(self, portal: Portal, target: str, lun: int) -> set[str]:
        """The NAA ids of one LUN; empty if the LUN cannot be read (gone, no longer masked)."""
        address = LunAddress(portal, target, lun)
        argv = [self._inq, "--evpd=1", "--pagecode=131", "-i", self.initiator, str(address)]
        done = await self._run(argv, f"read the identity of LUN {address}")
        if done.returncode != 0:
            log.debug("iscsi-inq %s as %s failed: %s", address, self.initiator, done.stderr.strip())
            return set()
        return parse_designators(done.raw_stdout)  # binary designators: the bytes as written

    async def discover(self, portal: Portal) -> dict[str, LunAddress]:
        """NAA id → address of every disk LUN `portal` shows this initiator."""
        found: dict[str, LunAddress] = {}
        for target in await self.targets(portal):
            for lun in target.luns:
                for naa in await self.lun_ids(portal, target.target, lun):
                    found.setdefault(naa, LunAddress(portal, target.target, lun))
        return found

    async def holds(self, address: LunAddress, naa: str) -> bool:
        """True if `address` still carries `naa` for this initiator (a cached answer is checked
        before it is used: LUN numbers are reused after an unmap)."""
        return naa in await self.lun_ids(address.portal, address.target, address.lun)
