"""`python -m tests.bench [--disks N --vms N]` — what `make bench` runs."""

from __future__ import annotations

import argparse
from pathlib import Path

from tests.bench import operator_bench
from tests.lab.paths import REPO_DIR

parser = argparse.ArgumentParser(prog="python -m tests.bench", description=operator_bench.__doc__)
parser.add_argument("--disks", type=int, default=200)
parser.add_argument("--vms", type=int, default=10)
parser.add_argument("--rounds", type=int, default=5, help="apply->Ready samples for (a)")
parser.add_argument("--sequential", type=int, default=20, help="disks applied one by one for (b)")
parser.add_argument("--lab-dir", type=Path, default=REPO_DIR / ".lab-bench")
args = parser.parse_args()
operator_bench.run(args.lab_dir.resolve(), args.disks, args.vms, args.rounds, args.sequential)
