"""The operator's speed on the lab.

(a) apply -> Ready of one VirtualDisk, against the floor: the same backend calls made
    directly (create LUN, initiators, igroup, map, discovery, rescan, RDM) in the same run.
(b) many VirtualDisks over many VMs applied at once: disks per second against applying them
    one by one, and how many (VM, controller, unit) places were handed out twice (must be 0).
"""

from __future__ import annotations

import asyncio
import json
import statistics
import time
import uuid
from collections import Counter
from pathlib import Path
from typing import Any

from lunbridge.hypervisor.base import Scope
from lunbridge.hypervisor.vsphere import VSphere, VSphereConfig
from lunbridge.san import Transport
from lunbridge.storage.tgt import TgtBackend, TgtConfig
from tests.lab import lab, operator, show
from tests.lab.lab import LabState, kubectl, node_name
from tests.lab.vcsim import load_inventory


def _disk(name: str, node: str, size: str = "64Mi") -> dict[str, Any]:
    return {"apiVersion": "lunbridge.io/v1alpha1", "kind": "VirtualDisk", "metadata": {"name": name},
            "spec": {"size": size, "nodeName": node}}  # fmt: skip


def _apply(state: LabState, items: list[dict[str, Any]]) -> None:
    result = kubectl(
        state, "apply", "-f", "-", input_text=json.dumps({"apiVersion": "v1", "kind": "List", "items": items})
    )
    if result.returncode != 0:
        raise RuntimeError(result.stderr)


def _statuses(state: LabState) -> dict[str, dict[str, Any]]:
    result = kubectl(state, "get", "vdisk", "-o", "json")
    return {i["metadata"]["name"]: i.get("status") or {} for i in json.loads(result.stdout)["items"]}


def _wait_ready(state: LabState, names: set[str], timeout: float) -> float:
    started = time.monotonic()
    while time.monotonic() - started < timeout:
        statuses = _statuses(state)
        if all(statuses.get(n, {}).get("phase") == "Ready" for n in names):
            return time.monotonic() - started
        time.sleep(0.05 if len(names) == 1 else 0.5)
    raise TimeoutError(f"not all of {len(names)} disks were Ready within {timeout}s")


def _delete_all(state: LabState) -> None:
    kubectl(state, "delete", "vdisk", "--all", "--timeout=600s")


async def _floor_once(state: LabState, vm_ref: str, workdir: Path) -> float:
    """The same calls the operator makes for one disk, made directly."""
    tgt_config = TgtConfig(
        control=state.tgt_control,
        portal=state.tgt.portal,
        pools={"default": workdir},
        state_file=workdir / "floor.json",
        iqn_prefix="iqn.2024-01.io.lunbridge.floor:",
    )
    tgt = TgtBackend(tgt_config)
    vsphere_config = VSphereConfig(
        url=state.vsphere_url,
        username=state.vsphere_user,
        password=state.vsphere_password,
        thumbprint=state.vsphere_thumbprint,
    )
    vsphere = await VSphere.connect(vsphere_config)
    name = f"floor-{uuid.uuid4().hex[:8]}"
    try:
        started = time.monotonic()
        lun = await tgt.create_lun(name, 64 << 20)
        vm = await vsphere.find_vm(vm_ref)
        initiators = await vsphere.vm_initiators(vm, Scope.HOST)
        iqns = sorted({i.address for i in initiators if i.transport is Transport.ISCSI})
        if not await tgt.list_igroups():
            await tgt.create_igroup("floor", Transport.ISCSI, iqns)
        await tgt.map_lun(lun.name, "floor")
        await vsphere.ensure_iscsi_portal([vm.host], state.tgt.portal)
        await vsphere.rescan(vm.host)
        await vsphere.attach_rdm(vm, lun.naa)
        elapsed = time.monotonic() - started
        await vsphere.detach_rdm(vm, lun.naa)
        await tgt.unmap_lun(lun.name, "floor")
        await tgt.delete_lun(lun.name)
        return elapsed
    finally:
        await vsphere.close()
        await tgt.close()


def latency(state: LabState, rounds: int) -> None:
    inventory = load_inventory(Path(state.lab_dir))
    vm = inventory.vms[0]
    node = node_name(vm.name)
    applied = []
    for _ in range(rounds):
        name = f"bench-{uuid.uuid4().hex[:8]}"
        started = time.monotonic()
        _apply(state, [_disk(name, node)])
        _wait_ready(state, {name}, 120)
        applied.append(time.monotonic() - started)
        kubectl(state, "delete", "vdisk", name, "--timeout=120s")
    workdir = Path(state.lab_dir) / "bench-floor"
    workdir.mkdir(exist_ok=True)
    floor = [asyncio.run(_floor_once(state, f"vsphere://{vm.bios_uuid}", workdir)) for _ in range(rounds)]
    a, f = statistics.median(applied), statistics.median(floor)
    print(f"(a) apply -> Ready, median of {rounds}: {a:.3f}s; the same backend calls directly: {f:.3f}s; "
          f"ratio {a / f:.1f}x")  # fmt: skip


def throughput(state: LabState, disks: int, vms: int, sequential: int) -> None:
    inventory = load_inventory(Path(state.lab_dir))
    nodes = [node_name(vm.name) for vm in inventory.vms[:vms]]
    if len(nodes) < vms:
        raise RuntimeError(f"the lab has {len(nodes)} VMs, the bench wants {vms}")
    items = [_disk(f"bulk-{i:03d}", nodes[i % vms]) for i in range(disks)]
    started = time.monotonic()
    _apply(state, items)
    took = _wait_ready(state, {i["metadata"]["name"] for i in items}, 1800)
    places = [(s["attachment"]["vmId"], s["attachment"]["controllerKey"], s["attachment"]["unitNumber"])
              for s in _statuses(state).values() if s.get("attachment")]  # fmt: skip
    collisions = sum(count - 1 for count in Counter(places).values() if count > 1)
    in_vcenter = show.rdms(state)
    vcenter_collisions = sum(
        c - 1 for c in Counter((vm, key, unit) for vm, key, unit, _ in in_vcenter).values() if c > 1
    )
    total = time.monotonic() - started
    print(
        f"(b) {disks} disks over {vms} VMs applied at once: Ready in {took:.1f}s = {disks / took:.2f} disks/s"
        " "
        f"(apply included: {total:.1f}s); unit collisions: {collisions} in status, "
        f"{vcenter_collisions} in vCenter ({len(in_vcenter)} RDMs)"
    )
    _delete_all(state)
    one_by_one = []
    for i in range(sequential):
        item = _disk(f"seq-{i:03d}", nodes[i % vms])
        t0 = time.monotonic()
        _apply(state, [item])
        _wait_ready(state, {item["metadata"]["name"]}, 120)
        one_by_one.append(time.monotonic() - t0)
    rate = len(one_by_one) / sum(one_by_one)
    print(f"    one by one ({sequential} disks, each waited for): {rate:.2f} disks/s; "
          f"at once is {disks / took / rate:.1f}x faster")  # fmt: skip
    _delete_all(state)


def run(lab_dir: Path, disks: int = 200, vms: int = 10, rounds: int = 5, sequential: int = 20) -> None:
    state = lab.up(lab_dir)
    try:
        operator.start(state)
        latency(state, rounds)
        throughput(state, disks, vms, sequential)
    finally:
        operator.stop(state)
        lab.down(lab_dir)
