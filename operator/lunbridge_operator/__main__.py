"""Command line of `lunbridge-operator`.

The reconcilers arrive with the VirtualDisk/InitiatorGroup work; for now the command
accepts and documents its configuration and says plainly that it cannot run yet.
"""

from __future__ import annotations

import argparse
import os
import sys
from collections.abc import Sequence

from lunbridge import __version__


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(
        prog="lunbridge-operator",
        description=(
            "Reconcile lunbridge VirtualDisk and InitiatorGroup objects: create LUNs on the storage "
            "server, mask them to the hypervisor host's initiators and attach them to the node's VM "
            "as raw device mappings."
        ),
        epilog="Every option can also be given as a LUNBRIDGE_* environment variable.",
    )
    parser.add_argument("--version", action="version", version=f"%(prog)s {__version__}")
    parser.add_argument(
        "--vsphere-url",
        default=os.environ.get("LUNBRIDGE_VSPHERE_URL"),
        help="vCenter SDK URL (LUNBRIDGE_VSPHERE_URL)",
    )
    parser.add_argument(
        "--vsphere-user",
        default=os.environ.get("LUNBRIDGE_VSPHERE_USER"),
        help="vCenter user (LUNBRIDGE_VSPHERE_USER); the password only from LUNBRIDGE_VSPHERE_PASSWORD",
    )
    parser.add_argument(
        "--tgt-portal",
        default=os.environ.get("LUNBRIDGE_TGT_PORTAL"),
        help="iSCSI portal of the tgtd storage backend, host:port (LUNBRIDGE_TGT_PORTAL)",
    )
    return parser


def main(argv: Sequence[str] | None = None) -> int:
    build_parser().parse_args(argv)
    print(
        "lunbridge-operator: the reconcilers are not part of this build yet; nothing was changed.",
        file=sys.stderr,
    )
    return 2


if __name__ == "__main__":
    sys.exit(main())
