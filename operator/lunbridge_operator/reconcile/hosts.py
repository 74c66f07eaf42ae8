"""The hosts a LUN is revealed to, one at a time, so one bad host does not block the others.

A disk masked to a whole cluster (so vMotion and HA keep access) is usable as soon as the
host running its VM sees the LUN. Another host of the cluster that is disconnected, has no
iSCSI adapter or does not list the LUN makes the disk not safe to move, which the
`ClusterReady` condition says, naming the host; it does not make the disk unusable, and it
never blocks a delete (a rescan after an unmap is best effort).
"""

from __future__ import annotations

import asyncio
from dataclasses import dataclass, field

from lunbridge.errors import LunbridgeError
from lunbridge.hypervisor.base import Host, Hypervisor


@dataclass
class HostProblems:
    """Hosts of the scope that could not be brought to see a LUN: host name → why."""

    failed: dict[str, str] = field(default_factory=dict)

    def describe(self) -> str:
        return "; ".join(f"host {name}: {why}" for name, why in sorted(self.failed.items()))


async def reveal(
    hypervisor: Hypervisor, hosts: list[Host], vm_host: Host, portal: str | None
) -> HostProblems:
    """Send-target discovery of `portal` (when given) and a rescan on every host, each on its
    own. The VM's host must succeed (its error is raised); the others' errors are returned."""

    async def one(host: Host) -> None:
        if portal:
            await hypervisor.ensure_iscsi_portal([host], portal)
        await hypervisor.rescan(host)

    results = await asyncio.gather(*(one(host) for host in hosts), return_exceptions=True)
    problems = HostProblems()
    for host, result in zip(hosts, results, strict=True):
        if isinstance(result, LunbridgeError):
            if host.id == vm_host.id:
                raise result
            problems.failed[host.name] = str(result)
        elif isinstance(result, BaseException):
            raise result
    return problems


async def not_seeing(hypervisor: Hypervisor, hosts: list[Host], naa: str, problems: HostProblems) -> None:
    """Add to `problems` every host (not failed already) that does not list LUN `naa`."""
    asked = [h for h in hosts if h.name not in problems.failed]
    results = await asyncio.gather(*(hypervisor.sees_lun(h, naa) for h in asked), return_exceptions=True)
    for host, result in zip(asked, results, strict=True):
        if isinstance(result, LunbridgeError):
            problems.failed[host.name] = str(result)
        elif isinstance(result, BaseException):
            raise result
        elif not result:
            problems.failed[host.name] = f"does not list {naa} after a rescan (is it in the igroup?)"


async def rescan_best_effort(hypervisor: Hypervisor, hosts: list[Host]) -> HostProblems:
    """Rescan every host; a host that cannot is reported, not raised."""
    results = await asyncio.gather(*(hypervisor.rescan(h) for h in hosts), return_exceptions=True)
    problems = HostProblems()
    for host, result in zip(hosts, results, strict=True):
        if isinstance(result, LunbridgeError):
            problems.failed[host.name] = str(result)
        elif isinstance(result, BaseException):
            raise result
    return problems
