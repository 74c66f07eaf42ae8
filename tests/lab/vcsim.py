"""The lab's vCenter: `lunbridge-vcsim` (hack/vcsim, built by hack/peers/build-vcsim.sh).

It is govmomi's simulator with ESXi-like hosts: each has its own FC WWPNs and a software
iSCSI adapter with its own IQN, and a rescan lists the LUNs a real iSCSI target (the lab's
tgtd) masks to that IQN. Once it listens it writes its inventory as JSON; `Inventory` is
that document, so tests know host names, WWPNs, IQNs, VM BIOS UUIDs and SCSI controllers
without asking the simulator.
"""

from __future__ import annotations

import json
import time
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any
from urllib.parse import urlsplit

from tests.lab import procs

NAME = "vcsim"
BINARY = "lunbridge-vcsim"


@dataclass(frozen=True)
class FcPort:
    device: str
    wwpn: str  # 16 lowercase hex digits
    wwnn: str


@dataclass(frozen=True)
class Host:
    name: str
    moref: str
    cluster: str | None
    fc: tuple[FcPort, ...]
    iscsi_device: str
    iqn: str

    @property
    def wwpns(self) -> list[str]:
        return [port.wwpn for port in self.fc]


@dataclass(frozen=True)
class ScsiController:
    key: int
    bus_number: int
    type: str  # e.g. "ParaVirtualSCSIController"


@dataclass(frozen=True)
class Disk:
    key: int
    controller_key: int
    unit_number: int
    file_name: str


@dataclass(frozen=True)
class Vm:
    name: str
    moref: str
    bios_uuid: str
    instance_uuid: str
    host: str  # host name at start (VMs do not move unless migrated)
    scsi_controllers: tuple[ScsiController, ...]
    disks: tuple[Disk, ...]


@dataclass(frozen=True)
class Inventory:
    url: str
    username: str
    datacenter: str
    hosts: tuple[Host, ...]
    vms: tuple[Vm, ...]

    def host(self, name: str) -> Host:
        for host in self.hosts:
            if host.name == name:
                return host
        raise KeyError(name)

    def vm(self, name: str) -> Vm:
        for vm in self.vms:
            if vm.name == name:
                return vm
        raise KeyError(name)

    @classmethod
    def from_json(cls, data: dict[str, Any]) -> Inventory:
        hosts = tuple(
            Host(
                name=str(h["name"]),
                moref=str(h["moref"]),
                cluster=None if h["cluster"] is None else str(h["cluster"]),
                fc=tuple(FcPort(str(p["device"]), str(p["wwpn"]), str(p["wwnn"])) for p in h["fc"]),
                iscsi_device=str(h["iscsi"]["device"]),
                iqn=str(h["iscsi"]["iqn"]),
            )
            for h in data["hosts"]
        )
        vms = tuple(
            Vm(
                name=str(v["name"]),
                moref=str(v["moref"]),
                bios_uuid=str(v["biosUuid"]),
                instance_uuid=str(v["instanceUuid"]),
                host=str(v["host"]),
                scsi_controllers=tuple(
                    ScsiController(int(c["key"]), int(c["busNumber"]), str(c["type"]))
                    for c in v["scsiControllers"]
                ),
                disks=tuple(
                    Disk(int(d["key"]), int(d["controllerKey"]), int(d["unitNumber"]), str(d["fileName"]))
                    for d in v["disks"]
                ),
            )
            for v in data["vms"]
        )
        return cls(
            url=str(data["url"]),
            username=str(data["username"]),
            datacenter=str(data["datacenter"]),
            hosts=hosts,
            vms=vms,
        )


def inventory_file(lab_dir: Path) -> Path:
    return lab_dir / f"{NAME}-inventory.json"


def state_file(lab_dir: Path) -> Path:
    """What the simulator keeps across a restart (devices added to VMs, hosts' iSCSI setup;
    hack/vcsim/persist.go says what is and is not kept)."""
    return lab_dir / f"{NAME}-state.json"


def load_inventory(lab_dir: Path) -> Inventory:
    """The inventory of the simulator running for `lab_dir`."""
    try:
        data: dict[str, Any] = json.loads(inventory_file(lab_dir).read_text())
    except (FileNotFoundError, json.JSONDecodeError) as exc:
        raise procs.LabError(f"no vcsim inventory in {lab_dir}: {exc}") from exc
    return Inventory.from_json(data)


def start(
    lab_dir: Path,
    bin_dir: Path,
    port: int,
    username: str,
    password: str,
    extra_args: Sequence[str] = (),
    timeout: float = 60.0,
    keep_state: bool = False,
) -> Inventory:
    """Start the simulator on 127.0.0.1:`port` and wait until it serves and wrote its inventory.

    A simulator already running for `lab_dir` is left alone and its inventory returned. It
    saves what clients changed in `state_file`; a start with `keep_state` restores that (as
    a restarted vCenter still has its VMs' devices), any other start begins afresh.
    """
    if procs.read_pid(lab_dir, NAME) is not None:
        return load_inventory(lab_dir)
    binary = bin_dir / BINARY
    if not binary.exists():
        raise procs.LabError(f"{binary} is missing; run hack/peers/build-vcsim.sh")
    inventory_file(lab_dir).unlink(missing_ok=True)
    if not keep_state:
        state_file(lab_dir).unlink(missing_ok=True)
    argv = [
        str(binary),
        "-l",
        f"127.0.0.1:{port}",
        "-username",
        username,
        "-password",
        password,
        "-inventory",
        str(inventory_file(lab_dir)),
        "-state",
        str(state_file(lab_dir)),
        *extra_args,
    ]
    procs.spawn(lab_dir, NAME, argv)
    deadline = time.monotonic() + timeout
    while not inventory_file(lab_dir).exists():
        if procs.read_pid(lab_dir, NAME) is None:
            log = procs.tail(procs.log_file(lab_dir, NAME))
            raise procs.LabError(f"vcsim exited while starting:\n{log}")
        if time.monotonic() > deadline:
            stop(lab_dir)
            raise procs.LabError(
                f"vcsim wrote no inventory within {timeout}s; see {procs.log_file(lab_dir, NAME)}"
            )
        time.sleep(0.1)
    procs.wait_port("127.0.0.1", port, 5, NAME, lab_dir)
    return load_inventory(lab_dir)


def stop(lab_dir: Path) -> bool:
    """Stop the simulator of `lab_dir` (SIGTERM: it saves its state first); True if it was running."""
    was_running = procs.stop(lab_dir, NAME)
    inventory_file(lab_dir).unlink(missing_ok=True)
    return was_running


def restart(lab_dir: Path, bin_dir: Path, url: str, username: str, password: str) -> Inventory:
    """Stop the running simulator (SIGTERM) and start it again on the same address, with the
    same credentials and the state it saved: the same inventory, RDMs, keys and units. Its
    TLS certificate is the simulator's built-in one, so the thumbprint does not change."""
    port = urlsplit(url).port
    if port is None:
        raise procs.LabError(f"no port in {url}")
    if not stop(lab_dir):  # returns once the process is gone, so its port is free
        raise procs.LabError("vcsim is not running")
    inventory = start(lab_dir, bin_dir, port, username, password, keep_state=True)
    if inventory.url != url:
        raise procs.LabError(f"vcsim came back at {inventory.url}, not {url}")
    return inventory


@dataclass(frozen=True)
class VcsimPeer:
    """A running simulator as tests see it: where it keeps its files, what it holds, who may log in."""

    lab_dir: Path
    inventory: Inventory
    username: str
    password: str
