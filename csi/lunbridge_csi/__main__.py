"""Command line of `lunbridge-csi`.

One binary serves every role: `--mode controller` (Identity + Controller: CSI calls become
VirtualDisk objects, next to the operator), `--mode node` (Identity + Node, inside each guest)
or `--mode all`, over grpc.aio on a unix socket or a TCP port. Its log lines and start-up
refusals pass through `lunbridge.redact`: no secret shows in them.
"""

from __future__ import annotations

import argparse
import asyncio
import logging
import os
import sys
from collections.abc import Callable, Sequence

from lunbridge import __version__, redact
from lunbridge.api import CSI_DRIVER_NAME
from lunbridge_csi.guest.scsi import DEFAULT_KVM_MAX_VOLUMES
from lunbridge_csi.volume_rules import Timeouts

MODES = ("controller", "node", "all")


def _number(kind: type[int] | type[float], variable: str) -> Callable[[str], int | float]:
    """An argparse type for a flag that defaults to `variable`: a bad value, from either, is
    refused at start naming both (argparse runs a string default through the type too)."""

    def parse(text: str) -> int | float:
        try:
            value = kind(text)
        except ValueError:
            what = "a whole number" if kind is int else "a number"
            raise argparse.ArgumentTypeError(f"{text!r} (the flag, or {variable}) is not {what}") from None
        if value < 0:
            raise argparse.ArgumentTypeError(f"{text!r} (the flag, or {variable}) must not be negative")
        return value

    return parse


def _check_environment(parser: argparse.ArgumentParser, args: argparse.Namespace) -> None:
    """Choices argparse checks on flags only, checked on values the environment gave too."""
    if args.mode not in MODES:
        parser.error(f"argument --mode: {args.mode!r} (the flag, or LUNBRIDGE_CSI_MODE) is not one of "
                     f"{', '.join(MODES)}")  # fmt: skip
    if not isinstance(logging.getLevelName(args.log_level.upper()), int):
        parser.error(f"argument --log-level: {args.log_level!r} (the flag, or LUNBRIDGE_LOG_LEVEL) is not a "
                     "level (DEBUG, INFO, WARNING, ERROR)")  # fmt: skip


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
        choices=MODES,
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
    parser.add_argument(
        "--capacity-bytes",
        type=_number(int, "LUNBRIDGE_CSI_CAPACITY_BYTES"),
        default=os.environ.get("LUNBRIDGE_CSI_CAPACITY_BYTES", "0"),
        help="what GetCapacity answers (the controller never asks the storage server); "
        "0: GET_CAPACITY is not advertised",
    )
    parser.add_argument(
        "--timeout",
        type=_number(float, "LUNBRIDGE_CSI_TIMEOUT"),
        default=os.environ.get("LUNBRIDGE_CSI_TIMEOUT", "240"),
        help="seconds a controller call waits for the operator before DEADLINE_EXCEEDED (default 240)",
    )
    parser.add_argument(
        "--max-volumes",
        type=_number(int, "LUNBRIDGE_CSI_MAX_VOLUMES"),
        default=os.environ.get("LUNBRIDGE_CSI_MAX_VOLUMES") or None,
        help="node: the max_volumes_per_node NodeGetInfo answers (default: counted, see --kvm-max-volumes)",
    )
    parser.add_argument(
        "--kvm-max-volumes",
        type=_number(int, "LUNBRIDGE_CSI_KVM_MAX_VOLUMES"),
        default=os.environ.get("LUNBRIDGE_CSI_KVM_MAX_VOLUMES", str(DEFAULT_KVM_MAX_VOLUMES)),
        help="node: lunbridge disks a KVM guest (virtio-scsi) may hold; a vSphere VM's count is read "
        "from its PVSCSI controllers (4 x 15 units less the disks lunbridge does not manage) "
        f"(default {DEFAULT_KVM_MAX_VOLUMES})",
    )
    parser.add_argument(
        "--node-name",
        default=os.environ.get("NODE_NAME"),
        help="node: this node's Kubernetes name (NODE_NAME, from the downward API); when given, the "
        "node plugin watches the API for work for this node (snapshot verification) and reports back",
    )
    parser.add_argument(
        "--verify-check",
        action="append",
        default=[c for c in os.environ.get("LUNBRIDGE_VERIFY_CHECKS", "").split(";") if c.strip()],
        metavar="NAME=COMMAND",
        help="node: a check a DiskVerification may name (spec.check), run on the snapshot's clone; "
        "{device} and {mount} (the clone mounted read-only) are substituted; exit 0 passes. "
        "Repeatable (LUNBRIDGE_VERIFY_CHECKS, ';'-separated)",
    )
    parser.add_argument(
        "--attach-mode",
        choices=("auto", "hypervisor", "initiator"),
        default=os.environ.get("LUNBRIDGE_ATTACH_MODE", "auto"),
        help="node: how this node gets LUNs (published on its LunbridgeNode): auto (a guest whose VM "
        "lunbridge can name: hypervisor; anything else: initiator), or either forced",
    )
    parser.add_argument("--log-level", default=os.environ.get("LUNBRIDGE_LOG_LEVEL", "INFO"))
    return parser


def main(argv: Sequence[str] | None = None) -> int:
    parser = build_parser()
    args = parser.parse_args(argv)
    _check_environment(parser, args)
    logging.basicConfig(
        level=args.log_level.upper(), format="%(asctime)s %(levelname)s %(name)s: %(message)s"
    )
    redact.install_log_filter()
    from lunbridge_csi.server import Settings, SettingsError, serve

    wait = args.timeout
    settings = Settings(
        mode=args.mode,
        endpoint=args.endpoint,
        driver_name=args.driver_name,
        node_id=args.node_id,
        capacity_bytes=args.capacity_bytes,
        timeouts=Timeouts(provision=wait, attach=wait, detach=wait, delete=wait, expand=wait),
        max_volumes=args.max_volumes,
        kvm_max_volumes=args.kvm_max_volumes,
        node_name=args.node_name,
        verify_checks=tuple(args.verify_check),
        attach_mode=args.attach_mode,
    )
    try:
        asyncio.run(serve(settings))
    except (SettingsError, RuntimeError) as exc:
        print(redact.redact(f"lunbridge-csi: {exc}"), file=sys.stderr)
        return 2
    return 0


if __name__ == "__main__":
    sys.exit(main())
