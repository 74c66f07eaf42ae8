"""(e) The operator at rest with 1,000 VirtualDisks (issue 18, P4).

1,000 disks are made Ready: as many attached as the lab's VMs hold and the rest unattached.
The lab's cluster shares one igroup, so its VMs hold at most 255 LUNs between them (tgt's LUN
ids 1..255); the standalone host's 3 VMs hold 59 each (4 PVSCSI controllers of 15 units, less
the boot disk). One more disk past the cluster's 255 shows the limit: it must end with a clear
condition, not a crash, and the figure says which.

Then nothing changes for `idle_seconds` (5 minutes by default) while the bench samples the
operator: its RSS (/proc/<pid>/status), its CPU (/proc/<pid>/stat) over the window, and the
API server's request counters for lunbridge's kinds, Nodes and Events (its /metrics; the lab's
other API client, the controller manager, touches none of them).
"""

from __future__ import annotations

import os
import re
import time
from pathlib import Path
from typing import Any

from tests.bench.kubewatch import VirtualDisks, disk
from tests.lab import lab, operator, procs
from tests.lab.lab import LabState, node_name
from tests.lab.vcsim import Inventory, load_inventory

LUN_IDS_PER_IGROUP = 255
UNITS_PER_VM = 59
REQUESTS = re.compile(r"^apiserver_request_total\{(?P<labels>[^}]*)\} (?P<count>[0-9.e+]+)$", re.M)


def plan(inventory: Inventory, total: int) -> list[dict[str, Any]]:
    """`total` disk bodies: attached ones spread over the VMs up to what they hold, the rest
    unattached."""
    per_vm: dict[str, int] = {}
    clustered = [vm for vm in inventory.vms if inventory.host(vm.host).cluster]
    standalone = [vm for vm in inventory.vms if not inventory.host(vm.host).cluster]
    for vm in clustered:
        per_vm[vm.name] = min(UNITS_PER_VM, LUN_IDS_PER_IGROUP // max(len(clustered), 1))
    for vm in standalone:
        per_vm[vm.name] = min(UNITS_PER_VM, LUN_IDS_PER_IGROUP // max(len(standalone), 1))
    bodies: list[dict[str, Any]] = []
    for vm_name, count in per_vm.items():
        for i in range(count):
            if len(bodies) < total:
                bodies.append(
                    disk(f"scale-{vm_name.lower().replace('_', '-')}-{i:02d}", node_name(vm_name), "8Mi")
                )
    index = 0
    while len(bodies) < total:
        body = disk(f"scale-free-{index:04d}", "", "8Mi")
        del body["spec"]["nodeName"]
        bodies.append(body)
        index += 1
    return bodies


def _proc(state: LabState) -> tuple[float, int]:
    """The operator's CPU seconds so far and its RSS in bytes."""
    pid = procs.read_pid(Path(state.lab_dir), operator.NAME)
    if pid is None:
        raise RuntimeError("the operator is not running")
    fields = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()
    cpu = (int(fields[11]) + int(fields[12])) / os.sysconf("SC_CLK_TCK")
    rss = next(
        int(line.split()[1]) * 1024
        for line in Path(f"/proc/{pid}/status").read_text().splitlines()
        if line.startswith("VmRSS:")
    )
    return cpu, rss


def _api_requests(disks: VirtualDisks) -> dict[str, float]:
    """The API server's request counters by resource, for lunbridge's kinds, Nodes and Events."""
    client = disks.api.api_client
    request = client.param_serialize("GET", "/metrics", auth_settings=["BearerToken"])
    text = client.call_api(*request).read().decode()
    counts: dict[str, float] = {}
    for found in REQUESTS.finditer(text):
        labels = dict(re.findall(r'(\w+)="([^"]*)"', found["labels"]))
        if labels.get("group") == "lunbridge.io" or labels.get("resource") in ("nodes", "events"):
            key = f"{labels.get('verb')} {labels.get('resource')}"
            counts[key] = counts.get(key, 0.0) + float(found["count"])
    return counts


def run(lab_dir: Path, total: int = 1000, idle_seconds: float = 300.0) -> None:
    state = lab.up(lab_dir)
    try:
        operator.start(state)
        measure(state, total, idle_seconds)
    finally:
        operator.stop(state)
        lab.down(lab_dir)


def measure(state: LabState, total: int, idle_seconds: float) -> None:
    inventory = load_inventory(Path(state.lab_dir))
    disks = VirtualDisks(state)
    bodies = plan(inventory, total)
    names = [b["metadata"]["name"] for b in bodies]
    attached = sum(1 for b in bodies if b["spec"].get("nodeName"))
    started = time.monotonic()
    since = disks.create(bodies)
    disks.ready_at(names, since, 3600)
    print(
        f"(e) {total} disks Ready ({attached} attached over {len(inventory.vms)} VMs, "
        f"{total - attached} unattached) in {time.monotonic() - started:.0f}s"
    )
    _limit(state, disks, inventory)

    cpu0, _ = _proc(state)
    api0 = _api_requests(disks)
    t0 = time.monotonic()
    peak = 0
    while time.monotonic() - t0 < idle_seconds:
        time.sleep(5)
        peak = max(peak, _proc(state)[1])
    cpu1, rss = _proc(state)
    api1 = _api_requests(disks)
    took = time.monotonic() - t0
    share = (cpu1 - cpu0) / took * 100
    minutes = took / 60
    per_minute = {k: (api1.get(k, 0.0) - api0.get(k, 0.0)) / minutes for k in api1}
    busiest = ", ".join(
        f"{k} {v:.0f}" for k, v in sorted(per_minute.items(), key=lambda kv: -kv[1]) if v >= 0.5
    )
    print(
        f"    at rest for {took:.0f}s: operator RSS {rss / 2**20:.0f} MiB (peak {peak / 2**20:.0f}; "
        f"goal <= 150 MiB), CPU {share:.1f}% of a core (goal <= 2%); API requests per minute: "
        f"{sum(per_minute.values()):.0f} ({busiest or 'none'})"
    )
    still = disks.phases()
    not_ready = [n for n in names if still.get(n, {}).get("phase") != "Ready"]
    print(f"    still Ready after the rest: {total - len(not_ready)} of {total}")
    disks.delete(names, timeout=3600)


def _limit(state: LabState, disks: VirtualDisks, inventory: Inventory) -> None:
    """One disk past the cluster igroup's LUN ids: its condition, as users read it."""
    vm = next(v for v in inventory.vms if inventory.host(v.host).cluster)
    extra = [disk(f"scale-past-{i}", node_name(vm.name), "8Mi") for i in range(4)]
    since = disks.create(extra)
    names = [e["metadata"]["name"] for e in extra]
    deadline = time.monotonic() + 120
    said: dict[str, str] = {}
    while time.monotonic() < deadline:
        phases = disks.phases()
        for name in names:
            status = phases.get(name, {})
            ready: dict[str, Any] = next(
                (c for c in status.get("conditions", []) if c["type"] == "Ready"), {}
            )
            if status.get("phase") == "Ready" or ready.get("reason") in ("LimitExceeded", "Conflict"):
                said[name] = f"{status.get('phase')}: {ready.get('reason')}: {ready.get('message', '')[:160]}"
        if len(said) == len(names):
            break
        time.sleep(1)
    del since
    for name in names:
        print(f"    past the limit, {name}: {said.get(name, 'no answer within 120s')}")
    disks.delete(names)
