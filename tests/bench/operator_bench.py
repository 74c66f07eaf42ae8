"""The operator's speed on the lab.

(a) create -> Ready of one VirtualDisk, at host and at cluster scope, against the floor at the
    same scope: what an administrator's script does for that disk (create the LUN, mask it to
    the scope's hosts, reveal it to them, attach the RDM) in one process. Disks are POSTed and
    awaited with a watch (tests/bench/kubewatch.py): no kubectl, no polling.
(b) many VirtualDisks over many VMs created at once: disks per second, the operator's CPU per
    disk, against creating them one by one, and how many (VM, controller, unit) places were
    handed out twice (must be 0).
"""

from __future__ import annotations

import asyncio
import hashlib
import os
import statistics
import time
import uuid
from collections import Counter
from collections.abc import Awaitable, Callable
from pathlib import Path

from lunbridge.hypervisor.base import Scope
from lunbridge.hypervisor.vsphere import VSphere, VSphereConfig
from lunbridge.models import VirtualDiskStatus
from lunbridge.san import Transport
from lunbridge.storage.tgt import TgtBackend, TgtConfig
from tests.bench.kubewatch import VirtualDisks, disk
from tests.lab import lab, operator, procs, show
from tests.lab.lab import LabState, node_name
from tests.lab.vcsim import load_inventory


class Floor:
    """What an administrator's script does for a disk at a scope, in one process, timed from
    the LUN's creation to the RDM: create the LUN, mask it (an igroup of the scope's hosts' IQNs,
    a map), reveal it to those hosts (send target, rescan), attach it to the VM. One tgt backend
    and one vCenter session, made before the clock starts, serve every disk."""

    def __init__(self, state: LabState, workdir: Path) -> None:
        self.state = state
        self.tgt = TgtBackend(TgtConfig(
            control=state.tgt_control, portal=state.tgt.portal, pools={"default": workdir},
            state_file=workdir / "floor.json", iqn_prefix="iqn.2024-01.io.lunbridge.floor:",
        ))  # fmt: skip
        self.vsphere: VSphere | None = None
        self.groups: dict[str, asyncio.Lock] = {}

    async def __aenter__(self) -> Floor:
        state = self.state
        self.vsphere = await VSphere.connect(VSphereConfig(
            url=state.vsphere_url, username=state.vsphere_user, password=state.vsphere_password,
            thumbprint=state.vsphere_thumbprint,
        ))  # fmt: skip
        return self

    async def __aexit__(self, *exc: object) -> None:
        if self.vsphere is not None:
            await self.vsphere.close()
        await self.tgt.close()

    async def disk(self, vm_ref: str, scope: Scope) -> tuple[float, Callable[[], Awaitable[None]]]:
        """One disk's calls: (seconds taken, how to take it away again)."""
        vsphere, tgt = self.vsphere, self.tgt
        assert vsphere is not None
        started = time.monotonic()
        lun = await tgt.create_lun(f"floor-{uuid.uuid4().hex[:8]}", 64 << 20)
        vm = await vsphere.find_vm(vm_ref)
        hosts = await vsphere.cluster_hosts(vm.host) if scope is Scope.CLUSTER else [vm.host]
        # one igroup per set of hosts (a cluster, or a standalone host), as an admin would keep
        group = "floor-" + hashlib.sha256(",".join(sorted(h.name for h in hosts)).encode()).hexdigest()[:12]
        async with self.groups.setdefault(group, asyncio.Lock()):
            if group not in {g.name for g in await tgt.list_igroups()}:
                initiators = await vsphere.vm_initiators(vm, scope)
                iqns = sorted({i.address for i in initiators if i.transport is Transport.ISCSI})
                await tgt.create_igroup(group, Transport.ISCSI, iqns)
        await tgt.map_lun(lun.name, group)
        await vsphere.ensure_iscsi_portal(hosts, self.state.tgt.portal)
        await asyncio.gather(*(vsphere.rescan(host) for host in hosts))
        await vsphere.attach_rdm(vm, lun.naa)
        elapsed = time.monotonic() - started

        async def undo() -> None:
            await vsphere.detach_rdm(vm, lun.naa)
            await tgt.unmap_lun(lun.name, group)
            await tgt.delete_lun(lun.name)

        return elapsed, undo


async def _floor_once(state: LabState, vm_ref: str, workdir: Path, scope: Scope) -> float:
    async with Floor(state, workdir) as floor:
        elapsed, undo = await floor.disk(vm_ref, scope)
        await undo()
        return elapsed


async def _floor_batch(state: LabState, vm_refs: list[str], workdir: Path) -> float:
    """The floor's calls for every disk at once (one per VM reference), at the operator's
    default (cluster) scope: the wall time until the last RDM."""
    async with Floor(state, workdir) as floor:
        started = time.monotonic()
        done = await asyncio.gather(*(floor.disk(ref, Scope.CLUSTER) for ref in vm_refs))
        took = time.monotonic() - started
        for _, undo in done:
            await undo()
        return took


def _applied_once(disks: VirtualDisks, node: str, scope: Scope) -> float:
    """One VirtualDisk POSTed and awaited with a watch, then deleted: seconds to Ready."""
    name = f"bench-{uuid.uuid4().hex[:8]}"
    started = time.monotonic()
    since = disks.create([disk(name, node, scope=str(scope))])
    took = disks.ready_at([name], since, 120)[name] - started
    disks.delete([name])
    return took


def latency(state: LabState, rounds: int) -> None:
    """(a) per scope: a VirtualDisk POSTed and awaited with a watch, each deleted before the
    next (so every round sees the same number of LUNs), against the floor at the same scope.
    Each side runs its rounds in a row after one of warm-up, which is not counted (the
    operator's first disk at a scope creates its igroup, the floor's first opens its sessions).
    Not round by round in turn: the floor's changes, made behind the operator's back, would
    make every operator round re-read what it keeps of tgtd and vCenter, which a disk applied
    while nothing else changes the backends does not."""
    inventory = load_inventory(Path(state.lab_dir))
    vm = inventory.vms[0]
    node = node_name(vm.name)
    disks = VirtualDisks(state)
    workdir = Path(state.lab_dir) / "bench-floor"
    workdir.mkdir(exist_ok=True)
    for scope in (Scope.HOST, Scope.CLUSTER):
        applied = [_applied_once(disks, node, scope) for _ in range(rounds + 1)][1:]
        floor = [
            asyncio.run(_floor_once(state, f"vsphere://{vm.bios_uuid}", workdir, scope))
            for _ in range(rounds + 1)
        ][1:]
        a, f = statistics.median(applied), statistics.median(floor)
        print(f"(a) {scope} scope: create -> Ready, median of {rounds}: {a:.3f}s; the floor (a script's "
              f"calls at {scope} scope): {f:.3f}s; ratio {a / f:.2f}x (goal <= 1.2x)")  # fmt: skip


def throughput(state: LabState, disks_wanted: int, vms: int, sequential: int) -> None:
    """(b) `disks_wanted` disks over `vms` VMs POSTed at once and awaited with one watch, then
    the same number one by one (each deleted before the next)."""
    inventory = load_inventory(Path(state.lab_dir))
    nodes = [node_name(vm.name) for vm in inventory.vms[:vms]]
    if len(nodes) < vms:
        raise RuntimeError(f"the lab has {len(nodes)} VMs, the bench wants {vms}")
    disks = VirtualDisks(state)
    items = [disk(f"bulk-{i:03d}", nodes[i % vms]) for i in range(disks_wanted)]
    names = [i["metadata"]["name"] for i in items]
    cpu = _operator_cpu(state)
    peers_before = _cpu_of(state, PEERS)
    started = time.monotonic()
    since = disks.create(items)
    ready = disks.ready_at(names, since, 1800)
    took = max(ready.values()) - started
    used = _operator_cpu(state) - cpu
    peers_spent = _spent(peers_before, _cpu_of(state, PEERS))
    statuses = disks.phases()
    attachments = [
        a for s in statuses.values() if (a := VirtualDiskStatus.from_dict(s).attachment) is not None
    ]
    places = [(a.vm_id, a.pci_slot, a.guest_address) for a in attachments]
    collisions = sum(count - 1 for count in Counter(places).values() if count > 1)
    in_vcenter = show.rdms(state)
    vcenter_collisions = sum(
        c - 1 for c in Counter((vm, key, unit) for vm, key, unit, _ in in_vcenter).values() if c > 1
    )
    print(
        f"(b) {disks_wanted} disks over {vms} VMs created at once: all Ready in {took:.1f}s = "
        f"{disks_wanted / took:.2f} disks/s; operator CPU {used / disks_wanted * 1000:.0f} ms per disk; "
        f"unit collisions: {collisions} in status, {vcenter_collisions} in vCenter ({len(in_vcenter)} RDMs)"
    )
    disks.delete(names)
    refs = [f"vsphere://{vm.bios_uuid}" for vm in inventory.vms[:vms]]
    workdir = Path(state.lab_dir) / "bench-floor"
    workdir.mkdir(exist_ok=True)
    floor_peers = ("vcsim", "tgtd")
    floor_before = _cpu_of(state, floor_peers)
    floor_cpu = time.process_time()
    floor = asyncio.run(_floor_batch(state, [refs[i % vms] for i in range(disks_wanted)], workdir))
    floor_cpu = time.process_time() - floor_cpu
    print(
        f"    the floor's calls for the same {disks_wanted} disks at once: {floor:.1f}s; the operator "
        f"took {took / floor:.2f}x that (goal <= 1.5x)"
    )
    print(
        f"    CPU seconds of the {disks_wanted} at once: operator {used:.1f}, {peers_spent} (2 cores: "
        f"{2 * took:.0f} in {took:.1f}s); of the floor's, with its undo: the script {floor_cpu:.1f}, "
        f"{_spent(floor_before, _cpu_of(state, floor_peers))}"
    )
    one_by_one = []
    for i in range(sequential):
        name = f"seq-{i:03d}"
        t0 = time.monotonic()
        since = disks.create([disk(name, nodes[i % vms])])
        one_by_one.append(disks.ready_at([name], since, 120)[name] - t0)
        disks.delete([name])
    rate = len(one_by_one) / sum(one_by_one)
    print(f"    one by one ({sequential} disks, each waited for and deleted): {rate:.2f} disks/s; "
          f"at once is {disks_wanted / took / rate:.1f}x faster")  # fmt: skip


def _operator_cpu(state: LabState) -> float:
    """CPU seconds the lab's operator process has used (user + system)."""
    return _cpu(state, operator.NAME)


# the lab's processes that (b)'s work runs through, besides the operator
PEERS = ("kube-apiserver", "etcd", "vcsim", "tgtd")


def _cpu(state: LabState, name: str) -> float:
    """CPU seconds (user + system, with its reaped children's: vcsim's iSCSI tools) of lab
    process `name`."""
    pid = procs.read_pid(Path(state.lab_dir), name)
    if pid is None:
        raise RuntimeError(f"the lab's {name} is not running")
    fields = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()
    return sum(int(f) for f in fields[11:15]) / os.sysconf("SC_CLK_TCK")


def _cpu_of(state: LabState, names: tuple[str, ...]) -> dict[str, float]:
    return {name: _cpu(state, name) for name in names}


def _spent(before: dict[str, float], after: dict[str, float]) -> str:
    return ", ".join(f"{name} {after[name] - before[name]:.1f}" for name in before)


def run(lab_dir: Path, disks: int = 200, vms: int = 10, rounds: int = 15, sequential: int = 20) -> None:
    state = lab.up(lab_dir)
    try:
        operator.start(state)
        latency(state, rounds)
        throughput(state, disks, vms, sequential)
    finally:
        operator.stop(state)
        lab.down(lab_dir)
