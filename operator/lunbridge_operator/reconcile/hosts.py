"""The hosts a LUN is revealed to, one at a time, so one bad host does not block the others.

A disk masked to a whole cluster (so vMotion and HA keep access) is usable as soon as the
host running its VM sees the LUN. Another host of the cluster that is disconnected, has no
iSCSI adapter or does not list the LUN makes the disk not safe to move, which the
`ClusterReady` condition says, naming the host; it does not make the disk unusable, and it
never blocks a delete (a rescan after an unmap is best effort).
"""

from __future__ import annotations

import asyncio
from collections.abc import Sequence
from dataclasses import dataclass, field

from lunbridge.api import INITIATOR_GROUP_PLURAL
from lunbridge.errors import HypervisorUnreachable, LunbridgeError, NotFound
from lunbridge.hypervisor.base import Host, Hypervisor, Scope, Vm
from lunbridge.models import InitiatorGroupStatus
from lunbridge_operator.reconcile.services import Services


@dataclass
class HostProblems:
    """Hosts of the scope that could not be brought to see a LUN: host name → why."""

    failed: dict[str, str] = field(default_factory=dict)

    def describe(self) -> str:
        return "; ".join(f"host {name}: {why}" for name, why in sorted(self.failed.items()))


async def of_scope(svc: Services, vm: Vm, wanted: str | None) -> list[Host]:
    """The hosts a LUN for `vm` is masked and revealed to: its host, or its whole cluster
    (`wanted`: the disk's spec.scope, else the operator's default)."""
    scope = svc.scope_for(vm.host, wanted)
    return await svc.hypervisor.cluster_hosts(vm.host) if scope is Scope.CLUSTER else [vm.host]


async def reveal(hypervisor: Hypervisor, host: Host, portal: str | None) -> None:
    """Send-target discovery of `portal` (when given), then a rescan, on `host`."""
    if portal:
        await hypervisor.ensure_iscsi_portal([host], portal)
    await hypervisor.rescan(host)


async def reveal_best_effort(hypervisor: Hypervisor, hosts: list[Host], portal: str | None) -> HostProblems:
    """`reveal` on each host on its own (none runs the VM): every error is returned, none raised."""
    results = await asyncio.gather(*(reveal(hypervisor, h, portal) for h in hosts), return_exceptions=True)
    return _problems(hosts, results)


def _problems(hosts: list[Host], results: Sequence[object]) -> HostProblems:
    problems = HostProblems()
    for host, result in zip(hosts, results, strict=True):
        if isinstance(result, LunbridgeError):
            problems.failed[host.name] = str(result)
        elif isinstance(result, BaseException):
            raise result
    return problems


async def seeing(hypervisor: Hypervisor, hosts: list[Host], naa: str, within: float) -> list[Host]:
    """The hosts of `hosts` that list LUN `naa` by a listing at most `within` seconds old (a
    host whose listing fails is not among them: its reveal says why)."""
    results = await asyncio.gather(
        *(hypervisor.sees_lun(h, naa, within=within) for h in hosts), return_exceptions=True
    )
    for result in results:
        if isinstance(result, BaseException) and not isinstance(result, LunbridgeError):
            raise result
    return [host for host, result in zip(hosts, results, strict=True) if result is True]


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
    """Rescan every host; a host that cannot is reported, not raised. HypervisorUnreachable
    (vCenter itself is down: no host could) is raised, so the step is tried again later."""
    results = await asyncio.gather(*(hypervisor.rescan(h) for h in hosts), return_exceptions=True)
    for result in results:
        if isinstance(result, HypervisorUnreachable):
            raise result
    return _problems(hosts, results)


def unique(found: list[Host]) -> list[Host]:
    return list({host.id: host for host in found}.values())


async def of_igroups(svc: Services, igroups: list[str]) -> list[Host]:
    """The hosts the InitiatorGroups named `igroups` serve now (their status); an igroup or a
    host that is gone has none."""
    found: list[Host] = []
    for name in igroups:
        try:
            raw = await svc.kube.get(INITIATOR_GROUP_PLURAL, name)
        except NotFound:
            continue
        for host_name in InitiatorGroupStatus.from_dict(raw.get("status")).hosts:
            try:
                found.append(await svc.hypervisor.find_host(host_name))
            except NotFound:
                continue
    return unique(found)
