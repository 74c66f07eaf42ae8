"""`python -m tests.bench [--disks N --vms N --only operator|scale|csi|node|snapshot|verify]` —
what `make bench` runs: the operator's figures (tests/bench/operator_bench.py), the operator at
rest with 1,000 disks (tests/bench/scale_bench.py), the CSI controller's
calls against its VirtualDisks' own times (tests/bench/csi_bench.py), the CSI node service's in
the lab's KVM guest (tests/bench/node_bench.py), snapshot and restore times of 1 GiB and 10 GiB
LUNs (tests/bench/snapshot_bench.py), and verification and in-place restore times of 1 GiB ext4
and XFS disks (tests/bench/verify_bench.py)."""

from __future__ import annotations

import argparse
from pathlib import Path

from tests.bench import csi_bench, node_bench, operator_bench, scale_bench, snapshot_bench, verify_bench
from tests.lab import lab, services
from tests.lab.paths import REPO_DIR

parser = argparse.ArgumentParser(prog="python -m tests.bench", description=__doc__)
parser.add_argument("--disks", type=int, default=200)
parser.add_argument("--vms", type=int, default=10)
parser.add_argument("--rounds", type=int, default=5, help="samples for (c), (d) and the CSI calls")
parser.add_argument("--latency-rounds", type=int, default=15, help="samples for (a), each scope")
parser.add_argument("--sequential", type=int, default=20, help="disks applied one by one for (b)")
parser.add_argument("--scale-disks", type=int, default=1000, help="VirtualDisks for the bench at rest")
parser.add_argument("--idle-seconds", type=float, default=300.0, help="how long the bench at rest watches")
parser.add_argument(
    "--only", choices=("operator", "scale", "csi", "node", "snapshot", "verify"), help="run one bench"
)
parser.add_argument("--lab-dir", type=Path, default=REPO_DIR / ".lab-bench")
args = parser.parse_args()
lab_dir = args.lab_dir.resolve()
if args.only in (None, "operator"):
    operator_bench.run(lab_dir, args.disks, args.vms, args.latency_rounds, args.sequential)
if args.only in (None, "scale"):
    scale_bench.run(lab_dir, args.scale_disks, args.idle_seconds)
if args.only in (None, "csi"):
    csi_bench.run(lab_dir, args.rounds)
if args.only in (None, "node"):
    try:
        node_bench.run(services.up(lab_dir), args.rounds)
    finally:
        lab.down(lab_dir)
if args.only in (None, "snapshot"):
    snapshot_bench.run(lab_dir)
if args.only in (None, "verify"):
    verify_bench.run(lab_dir)
