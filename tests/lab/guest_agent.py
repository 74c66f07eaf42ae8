"""The command agent that runs inside the lab's QEMU guest.

The guest's init (hack/peers/build-guest.sh) copies this file to /run and starts it with the
host's own Python (the guest's root is the host's / over 9p). It serves JSON lines on the
virtio-serial port named `lunbridge.agent`, so tests can run commands as root in the guest
without a network, sshd or a login console: `tests/lab/guest.py` is the other end.

Requests:  {"id": 1, "op": "ping"}
           {"id": 2, "op": "run", "argv": [...], "timeout": 30, "input": "...", "env": {...}}
Responses: {"id": 1, "pong": true, "python": "..."}
           {"id": 2, "returncode": 0, "stdout": "...", "stderr": "...", "timed_out": false}
Standard library only, one request at a time.
"""

from __future__ import annotations

import contextlib
import json
import os
import signal
import subprocess
import sys
import time
from pathlib import Path
from typing import Any

PORT_NAME = "lunbridge.agent"


def find_port(name: str = PORT_NAME) -> Path:
    """The /dev node of the virtio-serial port `name` (no udev here, so read sysfs)."""
    while True:
        for port in sorted(Path("/sys/class/virtio-ports").glob("vport*")):
            try:
                if (port / "name").read_text().strip() == name:
                    return Path("/dev") / port.name
            except OSError:
                continue
        time.sleep(0.1)


def run(req: dict[str, Any]) -> dict[str, Any]:
    argv = [str(a) for a in req["argv"]]
    timeout = float(req.get("timeout", 60))
    env = dict(os.environ)
    env.update({str(k): str(v) for k, v in (req.get("env") or {}).items()})
    data = req.get("input")
    try:
        proc = subprocess.Popen(
            argv,
            stdin=subprocess.PIPE if data is not None else subprocess.DEVNULL,
            stdout=subprocess.PIPE,
            stderr=subprocess.PIPE,
            env=env,
            cwd="/",
            start_new_session=True,
        )
    except OSError as exc:
        return {"returncode": 127, "stdout": "", "stderr": f"{argv[0]}: {exc}\n", "timed_out": False}
    timed_out = False
    try:
        out, err = proc.communicate(data.encode() if data is not None else None, timeout=timeout)
    except subprocess.TimeoutExpired:
        timed_out = True
        with contextlib.suppress(ProcessLookupError):
            os.killpg(proc.pid, signal.SIGKILL)
        out, err = proc.communicate()
    return {
        "returncode": proc.returncode,
        "stdout": out.decode(errors="replace"),
        "stderr": err.decode(errors="replace"),
        "timed_out": timed_out,
    }


def handle(line: bytes) -> dict[str, Any]:
    try:
        req = json.loads(line)
    except ValueError as exc:
        return {"id": None, "error": f"bad request: {exc}"}
    op = req.get("op")
    if op == "ping":
        resp: dict[str, Any] = {"pong": True, "python": sys.version}
    elif op == "run":
        resp = run(req)
    else:
        resp = {"error": f"unknown op {op!r}"}
    resp["id"] = req.get("id")
    return resp


def serve(path: Path) -> None:
    fd = os.open(path, os.O_RDWR)
    buf = b""
    while True:
        chunk = os.read(fd, 65536)
        if not chunk:  # no host connected: the port reads EOF until one is
            time.sleep(0.1)
            continue
        buf += chunk
        while b"\n" in buf:
            line, buf = buf.split(b"\n", 1)
            if line.strip():
                out = (json.dumps(handle(line)) + "\n").encode()
                while out:
                    out = out[os.write(fd, out) :]


def main() -> None:
    path = find_port()
    print(f"lunbridge agent on {path}", file=sys.stderr, flush=True)
    serve(path)


if __name__ == "__main__":
    main()
