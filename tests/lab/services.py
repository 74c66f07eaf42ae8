"""lunbridge itself on the lab (`make lab-up LAB_SERVICES=1`): the operator and the CSI
controller service on this machine, the CSI node service inside the KVM guest. Plain
`make lab-up` starts none of them; `lab.down` stops them with the peers.
"""

from __future__ import annotations

import os
from pathlib import Path

from tests.lab import csi, lab, procs
from tests.lab import libvirt as libvirt_lab
from tests.lab import operator as operator_lab
from tests.lab.procs import LabError


def wanted() -> bool:
    return os.environ.get("LAB_SERVICES", "0").strip() not in ("", "0")


def up(lab_dir: Path) -> lab.LabState:
    """The lab (started if needed), then lunbridge's services on it (started if needed)."""
    state = lab.up(lab_dir)
    if state.services and lab.running(lab_dir):
        return state
    if not state.libvirt_uri:
        raise LabError(
            "LAB_SERVICES=1 needs the lab's KVM guest (its node service runs there): unset LAB_GUEST=0"
        )
    try:
        if procs.read_pid(lab_dir, operator_lab.NAME) is None:
            operator_lab.start(state)
        if procs.read_pid(lab_dir, csi.CONTROLLER) is None:
            csi.start_controller(state.env(), lab_dir)
        guest = libvirt_lab.connect_guest(lab_dir)
        try:
            csi.start_node_service(guest, state.node_endpoint, **csi.node_channel(state))
        finally:
            guest.close()
    except BaseException:
        stop(state)
        raise
    state.services = True
    lab.save(state)
    return state


def stop(state: lab.LabState) -> None:
    """Stop the services, leave the lab up."""
    lab_dir = Path(state.lab_dir)
    for name in lab.SERVICES:
        procs.stop(lab_dir, name, timeout=15)
    if state.libvirt_uri and libvirt_lab.running(lab_dir):
        guest = libvirt_lab.connect_guest(lab_dir)
        try:
            csi.stop_node_service(guest)
        finally:
            guest.close()
    state.services = False
    lab.save(state)
