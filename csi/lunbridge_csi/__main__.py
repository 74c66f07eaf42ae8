"""Command line of `lunbridge-csi`.

One binary serves every role (`--mode controller|node|all`). The services arrive with the
CSI work; for now the command accepts and documents its options and says plainly that it
cannot serve yet.
"""

from __future__ import annotations

import argparse
import os
import sys
from collections.abc import Sequence

from lunbridge import __version__
from lunbridge.api import CSI_DRIVER_NAME


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(
        prog="lunbridge-csi",
        description=(
            "The lunbridge CSI plugin: the controller role turns CSI calls into VirtualDisk objects; "
            "the node role finds the attached LUN by its WWN inside the guest and mounts it."
        ),
    )
    parser.add_argument("--version", action="version", version=f"%(prog)s {__version__}")
    parser.add_argument(
        "--mode",
        choices=("controller", "node", "all"),
        default=os.environ.get("LUNBRIDGE_CSI_MODE", "all"),
        help="which CSI services to serve (default: all)",
    )
    parser.add_argument(
        "--endpoint",
        default=os.environ.get("CSI_ENDPOINT", "unix:///csi/csi.sock"),
        help="gRPC endpoint, unix:///path or tcp://127.0.0.1:PORT (CSI_ENDPOINT)",
    )
    parser.add_argument("--driver-name", default=CSI_DRIVER_NAME, help="CSI driver name")
    parser.add_argument("--node-id", default=os.environ.get("NODE_ID"), help="override the node identity")
    return parser


def main(argv: Sequence[str] | None = None) -> int:
    build_parser().parse_args(argv)
    print("lunbridge-csi: the CSI services are not part of this build yet.", file=sys.stderr)
    return 2


if __name__ == "__main__":
    sys.exit(main())
