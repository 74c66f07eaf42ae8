"""`python -m tests.lab up|down|status|demo|sanity` — what `make lab-up`, `lab-down`, `demo`
and `sanity` run. `up` with LAB_SERVICES=1 also starts lunbridge's services (tests.lab.services)."""

from __future__ import annotations

import argparse
import os
import shlex
import subprocess
import sys
import time
from collections.abc import Sequence
from pathlib import Path

from tests.lab import csi, demo, lab, operator, paths, procs, services, show, vcsim


def _describe(state: lab.LabState) -> str:
    lab_dir = Path(state.lab_dir)
    nodes = lab.kubectl(
        state, "get", "nodes", "-o", "custom-columns=NODE:.metadata.name,PROVIDER-ID:.spec.providerID"
    )
    inventory = vcsim.load_inventory(lab_dir)
    hosts = "\n".join(
        f"  {host.name:<24} cluster={host.cluster or '-':<6} iqn={host.iqn}  fc={','.join(host.wwpns)}"
        for host in inventory.hosts
    )
    targets = state.tgt.adm("--op", "show", "--mode", "target", check=False).stdout.strip() or "(none)"
    return (
        f"lab in {lab_dir}\n"
        f"  kube-apiserver  https://127.0.0.1:{state.apiserver_port}   (KUBECONFIG={state.kubeconfig})\n"
        f"  vCenter (sim)   {state.vsphere_url}   user {state.vsphere_user}\n"
        f"  tgtd            iscsi://{state.tgt.portal}   control socket {state.tgt_control}\n"
        + (
            f"  KVM host        {state.libvirt_uri}   host IQN {state.host_iqn}   "
            f"guest Node {state.guest_node} (virsh -c '{state.libvirt_uri}' list)\n"
            if state.libvirt_uri
            else "  KVM host        (none: LAB_GUEST=0)\n"
        )
        + (
            f"  lunbridge       operator, CSI controller {csi.controller_socket(lab_dir)}, "
            f"node service in the guest at {state.node_endpoint}\n"
            if state.services
            else "  lunbridge       (not started: LAB_SERVICES=1 starts the operator and the CSI plugin)\n"
        )
        + f"  shell env       source {lab_dir / 'env'}\n\n"
        f"Kubernetes Nodes (one per VM):\n{nodes.stdout}\n"
        f"Hypervisor hosts and their initiators:\n{hosts}\n\n"
        f"tgtd targets:\n{targets}\n"
    )


def main(argv: Sequence[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m tests.lab", description=__doc__)
    parser.add_argument("command", choices=("up", "down", "status", "demo", "sanity"))
    parser.add_argument("--lab-dir", type=Path, default=paths.default_lab_dir())
    args = parser.parse_args(argv)
    lab_dir: Path = args.lab_dir.resolve()
    try:
        if args.command == "up":
            current = lab.load(lab_dir)
            with_services = current is not None and current.services
            already = lab.running(lab_dir) and (with_services or not services.wanted())
            started = time.monotonic()
            state = services.up(lab_dir) if services.wanted() else lab.up(lab_dir)
            verb = "already up" if already else f"up in {time.monotonic() - started:.1f}s"
            print(f"lab {verb}\n")
            print(_describe(state))
        elif args.command == "down":
            lab.down(lab_dir)
            print(f"lab in {lab_dir} is down")
        elif args.command == "status":
            current = lab.load(lab_dir)
            if current is None or not lab.running(lab_dir):
                print(f"no lab running in {lab_dir}")
                return 1
            print(_describe(current))
        elif args.command == "sanity":
            return _sanity(lab_dir)
        else:
            return _demo(lab_dir)
    except procs.LabError as exc:
        print(f"lab: {exc}", file=sys.stderr)
        return 1
    return 0


def _demo(lab_dir: Path) -> int:
    """The main job on the local lab: a VirtualDisk applied, attached as an RDM, shown, deleted;
    then a volume into the KVM guest through the CSI services, formatted, mounted and written."""
    started = time.monotonic()
    state = lab.up(lab_dir)
    print(f"== lab up in {time.monotonic() - started:.1f}s\n")
    print(_describe(state))
    try:
        operator.start(state)
        print("== lunbridge-operator started (log: " + str(procs.log_file(lab_dir, operator.NAME)) + ")\n")
        example = paths.REPO_DIR / "examples" / "virtualdisk.yaml"
        _run(state, "kubectl apply -f examples/virtualdisk.yaml", "apply", "-f", str(example))
        began = time.monotonic()
        _run(state, "waiting for Ready", "wait", "--for=condition=Ready", "vdisk/demo-disk", "--timeout=120s")
        print(f"   Ready after {time.monotonic() - began:.1f}s\n")
        _run(state, "kubectl get vdisk,igroup -o wide", "get", "vdisk,igroup", "-o", "wide")
        print("== tgtd holds (LUN, its NAA as SCSI ID, the ACL):\n" + show.tgt_targets(state) + "\n")
        print("== vCenter holds these raw device mappings:\n" + show.rdm_table(state) + "\n")
        _run(state, "kubectl delete vdisk demo-disk", "delete", "vdisk", "demo-disk", "--timeout=120s")
        print("== tgtd after the delete:\n" + show.tgt_targets(state) + "\n")
        print("== vCenter after the delete:\n" + show.rdm_table(state) + "\n")
        if state.libvirt_uri:
            print("== and into a real guest: the CSI controller here, the node service in the KVM guest\n")
            state = services.up(lab_dir)
            demo.into_the_guest(state)
    finally:
        if state.services:
            services.stop(state)
        operator.stop(state)
        lab.down(lab_dir)
    print("== lab down: no peer process and no tgtd target left")
    return 0


def _sanity(lab_dir: Path) -> int:
    """csi-sanity against the lab's CSI controller service and the guest's node service, with
    the arguments in SANITY_ARGS too (e.g. `--ginkgo.focus=Node`: some specs only)."""
    state = lab.load(lab_dir)
    if state is None or not state.services or not lab.running(lab_dir):
        raise procs.LabError(
            f"no lab with lunbridge's services runs in {lab_dir}: run `make lab-up LAB_SERVICES=1`"
        )
    argv = csi.sanity_argv(state.env(), *shlex.split(os.environ.get("SANITY_ARGS", "")))
    print("== " + " ".join(argv), flush=True)
    return subprocess.run(argv, check=False).returncode


def _run(state: lab.LabState, title: str, *args: str) -> None:
    print(f"== {title}")
    result = lab.kubectl(state, *args)
    print(result.stdout.rstrip() + "\n")
    if result.returncode != 0:
        raise procs.LabError(f"kubectl {' '.join(args)} failed: {result.stderr.strip()}")


if __name__ == "__main__":
    sys.exit(main())
