"""The CSI Node service on a loopback port, on this machine but away from its disks: a root
folder with an empty sysfs and mount table, a throwaway state folder, and a runner that runs
nothing (it records every command line in a file and answers exit 1), so a test can tell
whether a request touched anything.

`python -m tests.integration.generated.node_server --port P --scratch DIR`; `lunbridge-csi
--mode node` has no options for its root and state folders, hence this small server.
"""

from __future__ import annotations

import argparse
import asyncio
import json
import logging
import signal
from collections.abc import Sequence
from pathlib import Path
from typing import Any

import grpc.aio

from lunbridge.command import Result
from lunbridge_csi._proto import csi_pb2_grpc
from lunbridge_csi.identity import IdentityService
from lunbridge_csi.node import NodeService

stubs: Any = csi_pb2_grpc
EMPTY_DIRS = (
    "sys/class/scsi_host",
    "sys/bus/scsi/devices",
    "sys/block",
    "sys/bus/pci/devices",
    "proc/self",
    "dev",
)


def make_root(root: Path) -> None:
    for folder in EMPTY_DIRS:
        (root / folder).mkdir(parents=True, exist_ok=True)
    (root / "proc/self/mountinfo").write_text("")


async def serve(port: int, scratch: Path) -> None:
    root, state, commands = scratch / "root", scratch / "state", scratch / "commands.jsonl"
    make_root(root)

    async def refuse(argv: Sequence[str], time_limit: float) -> Result:
        with commands.open("a") as out:
            out.write(json.dumps(list(argv)) + "\n")
        return Result(tuple(argv), 1, "", "the test's runner runs nothing")

    node = NodeService(
        root=root,
        runner=refuse,
        node_id="gen-node",
        state_dir=state,
        device_timeout=1.0,
        dev_dir=str(root / "dev"),
    )
    server = grpc.aio.server()
    stubs.add_NodeServicer_to_server(node, server)
    stubs.add_IdentityServicer_to_server(IdentityService(driver_name="csi.lunbridge.io"), server)
    server.add_insecure_port(f"127.0.0.1:{port}")
    await server.start()
    stopping = asyncio.Event()
    for signum in (signal.SIGTERM, signal.SIGINT):
        asyncio.get_running_loop().add_signal_handler(signum, stopping.set)
    await stopping.wait()
    await server.stop(2)


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--port", type=int, required=True)
    parser.add_argument("--scratch", type=Path, required=True)
    args = parser.parse_args()
    logging.basicConfig(level="INFO", format="%(asctime)s %(levelname)s %(name)s: %(message)s")
    asyncio.run(serve(args.port, args.scratch))


if __name__ == "__main__":
    main()
