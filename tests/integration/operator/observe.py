"""What a user can check, read straight from the peers and never through lunbridge: objects and
Events in the API server (the lab's kubectl), targets, LUs and ACLs in tgtd (`tgtadm --op
show`), the tgt backend's own state file and pool folder, and RDMs and host LUNs in vCenter
(plain pyvmomi)."""

from __future__ import annotations

import asyncio
import json
import time
from collections.abc import Awaitable, Callable
from dataclasses import dataclass
from pathlib import Path
from typing import Any, TypeVar

from lunbridge.api import API_VERSION
from lunbridge.storage.tgt import TgtBackend, TgtConfig
from tests.integration.hypervisor.vcenter import find, rdm_disks, vim
from tests.lab import tgt as tgt_lab
from tests.lab.lab import LabState, kubectl

T = TypeVar("T")
TARGET_PREFIX = "iqn.2024-01.io.lunbridge:"  # the operator's default --tgt-iqn-prefix


def eventually(probe: Callable[[], T | None], timeout: float, what: str, every: float = 0.25) -> T:
    """Poll `probe` until it returns something truthy; fail with `what` after `timeout` seconds."""
    deadline = time.monotonic() + timeout
    last: T | None = None
    while time.monotonic() < deadline:
        last = probe()
        if last:
            return last
        time.sleep(every)
    raise AssertionError(f"not within {timeout:.0f}s: {what} (last seen: {last!r})")


# --- the API server ------------------------------------------------------------------------
def vdisk(name: str, size: str = "64Mi", labels: dict[str, str] | None = None, **spec: Any) -> dict[str, Any]:
    return {
        "apiVersion": API_VERSION,
        "kind": "VirtualDisk",
        "metadata": {"name": name, "labels": labels or {}},
        "spec": {"size": size, **spec},
    }


def apply(lab: LabState, *objects: dict[str, Any]) -> None:
    """One `kubectl apply` of all `objects` (as a List)."""
    body = json.dumps({"apiVersion": "v1", "kind": "List", "items": list(objects)})
    result = kubectl(lab, "apply", "-f", "-", input_text=body)
    assert result.returncode == 0, result.stderr


def get(lab: LabState, kind: str, name: str) -> dict[str, Any] | None:
    result = kubectl(lab, "get", kind, name, "-o", "json", "--ignore-not-found")
    assert result.returncode == 0, result.stderr
    return json.loads(result.stdout) if result.stdout.strip() else None


def items(lab: LabState, kind: str, *selector: str) -> list[dict[str, Any]]:
    result = kubectl(lab, "get", kind, *selector, "-o", "json")
    assert result.returncode == 0, result.stderr
    found: list[dict[str, Any]] = json.loads(result.stdout)["items"]
    return found


def condition(obj: dict[str, Any], kind: str) -> dict[str, Any]:
    return next((c for c in obj.get("status", {}).get("conditions", []) if c["type"] == kind), {})


def is_ready(obj: dict[str, Any] | None) -> bool:
    """Ready=True for the object's current generation."""
    if obj is None:
        return False
    ready = condition(obj, "Ready")
    generation = obj["metadata"]["generation"]
    return ready.get("status") == "True" and ready.get("observedGeneration") == generation


def wait_ready(lab: LabState, name: str, timeout: float = 60) -> dict[str, Any]:
    return eventually(
        lambda: obj if is_ready(obj := get(lab, "vdisk", name)) else None,
        timeout,
        f"VirtualDisk {name} Ready",
    )


def wait_cluster_ready(lab: LabState, name: str, timeout: float = 60) -> dict[str, Any]:
    """The disk once its ClusterReady is worked out (True or False): it is Unknown from the
    Ready write until the other hosts of the scope were revealed to."""
    return eventually(
        lambda: (
            obj
            if condition(obj := get(lab, "vdisk", name) or {}, "ClusterReady").get("status")
            in ("True", "False")
            else None
        ),
        timeout,
        f"VirtualDisk {name} ClusterReady worked out",
    )


def wait_gone(lab: LabState, kind: str, name: str, timeout: float = 60) -> None:
    eventually(lambda: get(lab, kind, name) is None, timeout, f"{kind} {name} gone")


def events(lab: LabState, obj: dict[str, Any]) -> list[dict[str, Any]]:
    """Events about this very object (its UID: an earlier object of the same name had others);
    kopf posts those of cluster-scoped objects in `default`."""
    meta = obj["metadata"]
    selector = f"involvedObject.kind={obj['kind']},involvedObject.name={meta['name']}"
    found = items(lab, "events", "-A", f"--field-selector={selector}")
    return [e for e in found if e["involvedObject"].get("uid") == meta["uid"]]


def wait_events(lab: LabState, obj: dict[str, Any], reasons: set[str], timeout: float = 10) -> None:
    """Wait until the object has Events with all of `reasons` (kopf posts them in batches)."""
    eventually(
        lambda: reasons <= {e["reason"] for e in events(lab, obj)},
        timeout,
        f"Events {sorted(reasons)} about {obj['metadata']['name']}",
    )


def warnings(lab: LabState, obj: dict[str, Any]) -> list[str]:
    """`reason: message` of the object's Warning events."""
    return [f"{e['reason']}: {e['message']}" for e in events(lab, obj) if e.get("type") == "Warning"]


# --- tgtd ------------------------------------------------------------------------------------
@dataclass(frozen=True)
class Lu:
    number: int
    scsi_id: str
    serial: str
    path: str


@dataclass(frozen=True)
class Target:
    tid: int
    name: str
    lus: dict[int, Lu]  # without LU 0, tgt's controller
    acl: frozenset[str]


def targets(tgt: tgt_lab.Tgt) -> dict[str, Target]:
    """Every target of tgtd by IQN, parsed from `tgtadm --op show --mode target`."""
    shown = tgt.adm("--op", "show", "--mode", "target").stdout
    found: dict[str, Target] = {}
    for block in ("\n" + shown).split("\nTarget ")[1:]:
        head, _, rest = block.partition("\n")
        tid, name = head.split(": ", 1)
        lu_text = rest.split("LUN information:", 1)[1].split("Account information:", 1)[0]
        lus = {}
        for lu in lu_text.split("LUN: ")[1:]:
            fields = dict(
                (key.strip(), value.strip())
                for key, _, value in (line.partition(":") for line in lu.splitlines()[1:])
            )
            number = int(lu.split("\n", 1)[0])
            if number:
                lus[number] = Lu(number, fields["SCSI ID"], fields["SCSI SN"], fields["Backing store path"])
        acl = rest.split("ACL information:", 1)[1].split()
        found[name.strip()] = Target(int(tid), name.strip(), lus, frozenset(acl))
    return found


def served(tgt: tgt_lab.Tgt) -> set[str]:
    """The NAAs (naa.…) every LU of tgtd serves."""
    return {f"naa.{lu.scsi_id}" for t in targets(tgt).values() for lu in t.lus.values()}


def lus_with(tgt: tgt_lab.Tgt, naa: str) -> list[tuple[str, Lu]]:
    """(target IQN, LU) of every LU that serves `naa` (tgt's SCSI ID is the NAA without `naa.`)."""
    scsi_id = naa.removeprefix("naa.")
    return [(t.name, lu) for t in targets(tgt).values() for lu in t.lus.values() if lu.scsi_id == scsi_id]


# --- the tgt backend's own record --------------------------------------------------------------
def backend_state(lab: LabState) -> dict[str, Any]:
    """The backend's state file (none before the operator's first call: nothing made yet)."""
    path = Path(lab.env()["LUNBRIDGE_TGT_STATE_FILE"])
    state: dict[str, Any] = json.loads(path.read_text()) if path.exists() else {}
    return {"luns": {}, "igroups": {}, "maps": [], **state}


def pool_dir(lab: LabState) -> Path:
    """The lab's pool folder (the XFS reflink pool of tests/lab/pool.py)."""
    return Path(lab.env()["LUNBRIDGE_TGT_POOL_DIR"])


def pool_files(lab: LabState) -> set[str]:
    """Names of the LUN files in the pool (one per LUN: `<lun name>.img`)."""
    folder = Path(lab.env()["LUNBRIDGE_TGT_POOL_DIR"]) / "luns"
    return {path.name for path in folder.glob("*.img")} if folder.exists() else set()


# --- vCenter ---------------------------------------------------------------------------------
@dataclass(frozen=True)
class Rdm:
    vm: str
    key: int
    controller_key: int
    bus: int
    unit: int
    device: str  # the host's device path, /vmfs/devices/disks/naa.<hex>


def rdms(si: Any, vm_name: str) -> list[Rdm]:
    vm = find(si, vim.VirtualMachine, vm_name)
    buses = {
        d.key: d.busNumber
        for d in vm.config.hardware.device
        if isinstance(d, vim.vm.device.VirtualSCSIController)
    }
    return [
        Rdm(vm_name, d.key, d.controllerKey, buses[d.controllerKey], d.unitNumber, d.backing.deviceName)
        for d in rdm_disks(vm)
    ]


def host_luns(si: Any, host_name: str) -> set[str]:
    """Canonical names (naa.…) of the SCSI disks a host lists after its last rescan."""
    host = find(si, vim.HostSystem, host_name)
    return {lun.canonicalName for lun in host.config.storageDevice.scsiLun or [] if lun.lunType == "disk"}


def bios_uuid(si: Any, vm_name: str) -> str:
    """What a Node's providerID names the VM by (`vsphere://<BIOS UUID>`)."""
    found: str = find(si, vim.VirtualMachine, vm_name).config.uuid
    return found


def on_backend(
    lab: LabState, act: Callable[[TgtBackend], Awaitable[T]], *, pool_dir: Path | None = None
) -> T:
    """Run `act` on the lab's tgtd through a backend of its own, as an administrator would on
    the storage server, behind the operator's back (both keep to the one state file: the lab's,
    or with `pool_dir` the chart's default, `<pool_dir>/tgt-state.json`)."""
    env = lab.env()
    if pool_dir is None:
        pool, state = Path(env["LUNBRIDGE_TGT_POOL_DIR"]), Path(env["LUNBRIDGE_TGT_STATE_FILE"])
    else:
        pool, state = pool_dir, pool_dir / "tgt-state.json"
    config = TgtConfig(lab.tgt_control, lab.tgt.portal, {"default": pool}, state, TARGET_PREFIX)

    async def run() -> T:
        backend = TgtBackend(config)
        try:
            return await act(backend)
        finally:
            await backend.close()

    return asyncio.run(run())


def delete_lun(lab: LabState, name: str) -> None:
    """Delete a LUN on the lab's tgtd directly, through the backend (one a test kept or left)."""
    on_backend(lab, lambda backend: backend.delete_lun(name))


def wait_node_accepted(lab: LabState, node: str, iqn: str, timeout: float = 120) -> dict[str, Any]:
    """LunbridgeNode `node` once it says `initiator` mode and the operator accepted `iqn` for it
    (an earlier plugin of the node may have left another publication there)."""

    def accepted() -> dict[str, Any] | None:
        found = get(lab, "lbnode", node) or {}
        spec, status = found.get("spec") or {}, found.get("status") or {}
        ok = spec.get("mode") == "initiator" and iqn in (status.get("accepted") or [])
        return found if ok else None

    return eventually(accepted, timeout, f"LunbridgeNode {node} publishing initiator mode, {iqn} accepted")
