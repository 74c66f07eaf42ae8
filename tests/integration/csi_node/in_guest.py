"""Run inside the lab's KVM guest: serve lunbridge's real NodeService on a unix socket with
grpc.aio, call it through a real CSI client stub, and print one JSON result per step.

    python in_guest.py '{"socket": "/run/x.sock", "service": {...}, "steps": [...]}'

A step is {"call": "NodeStageVolume", "request": {...}} (the request as protobuf JSON;
the result is {"code": "OK", "response": {...}} or {"code": "FAILED_PRECONDITION",
"details": "..."}) or {"sh": "shell command"} ({"rc", "stdout", "stderr"}).
Imports nothing from tests/: the guest sees this machine's root read-only, so this file and
the venv's python are at the same paths, with PYTHONPATH naming the repo and csi/.
"""

from __future__ import annotations

import asyncio
import json
import subprocess
import sys
import time
from pathlib import Path
from typing import Any

import grpc
import grpc.aio
from google.protobuf import json_format

from lunbridge_csi._proto import csi_pb2, csi_pb2_grpc
from lunbridge_csi.guest.scsi import DEFAULT_KVM_MAX_VOLUMES
from lunbridge_csi.node import NodeService


async def call(stub: Any, method: str, request: dict[str, Any]) -> dict[str, Any]:
    message = json_format.ParseDict(request, getattr(csi_pb2, f"{method}Request")())
    started = time.monotonic()
    try:
        response = await getattr(stub, method)(message, timeout=240)
    except grpc.aio.AioRpcError as err:
        return {"code": err.code().name, "details": err.details(), "seconds": time.monotonic() - started}
    return {
        "code": "OK",
        "response": json_format.MessageToDict(response),
        "seconds": time.monotonic() - started,
    }


async def main(args: dict[str, Any]) -> list[dict[str, Any]]:
    socket = args["socket"]
    await asyncio.to_thread(Path(socket).unlink, missing_ok=True)
    server = grpc.aio.server()
    service = args.get("service", {})
    csi_pb2_grpc.add_NodeServicer_to_server(  # type: ignore[no-untyped-call]
        NodeService(
            node_id=service.get("node_id"),
            max_volumes=service.get("max_volumes"),
            kvm_max_volumes=int(service.get("kvm_max_volumes", DEFAULT_KVM_MAX_VOLUMES)),
            state_dir=Path(service.get("state_dir", "/var/lib/lunbridge-guest")),
            device_timeout=float(service.get("device_timeout", 30)),
        ),
        server,
    )
    server.add_insecure_port(f"unix://{socket}")
    await server.start()
    results: list[dict[str, Any]] = []
    try:
        async with grpc.aio.insecure_channel(f"unix://{socket}") as channel:
            stub = csi_pb2_grpc.NodeStub(channel)  # type: ignore[no-untyped-call]
            for step in args["steps"]:
                if "call" in step:
                    results.append(await call(stub, step["call"], step.get("request", {})))
                else:
                    done = await asyncio.to_thread(
                        subprocess.run, ["/bin/sh", "-c", step["sh"]], capture_output=True, text=True
                    )
                    results.append({"rc": done.returncode, "stdout": done.stdout, "stderr": done.stderr})
    finally:
        await server.stop(None)
        await asyncio.to_thread(Path(socket).unlink, missing_ok=True)
    return results


if __name__ == "__main__":
    print(json.dumps(asyncio.run(main(json.loads(sys.argv[1])))))
