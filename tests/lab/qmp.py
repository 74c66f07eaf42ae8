"""Line-oriented unix-socket clients for the lab's QEMU guest: QMP and the command agent.

The lab drives its hypervisor the way a KVM host's management layer does: hot-plug of SAN
LUNs goes through QMP (`blockdev-add` + `device_add`), so a small client that handles the
greeting, capability negotiation and asynchronous events is all the lab needs; pulling in a
QMP library would hide exactly the protocol details the project wants to see.
"""

from __future__ import annotations

import json
import socket
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

from tests.lab.procs import LabError

MAX_EVENTS = 500  # unclaimed events kept (oldest dropped)


class QmpError(LabError):
    """QEMU answered a QMP command with an error."""

    def __init__(self, command: str, error: dict[str, Any]) -> None:
        self.command = command
        self.error_class = str(error.get("class", ""))
        self.desc = str(error.get("desc", ""))
        super().__init__(f"QMP {command} failed: {self.error_class}: {self.desc}")


class LineSocket:
    """A unix stream socket read as newline-terminated JSON objects, with deadlines."""

    def __init__(self, path: Path, timeout: float, alive: Callable[[], bool] = lambda: True) -> None:
        deadline = time.monotonic() + timeout
        while True:
            sock = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
            try:
                sock.connect(str(path))
                break
            except OSError as exc:
                sock.close()
                if time.monotonic() > deadline or not alive():
                    raise LabError(f"cannot connect to {path}: {exc}") from exc
                time.sleep(0.1)
        self.path = path
        self._sock = sock
        self._buf = b""

    def send(self, obj: dict[str, Any], timeout: float = 10.0) -> None:
        """Send one object; TimeoutError if the peer does not take it within `timeout`
        (a QEMU chardev whose guest side is not open yet stops reading)."""
        self._sock.settimeout(max(timeout, 0.1))
        self._sock.sendall((json.dumps(obj) + "\n").encode())

    def recv(self, deadline: float) -> dict[str, Any] | None:
        """The next JSON object, or None if none arrived before `deadline` (monotonic)."""
        while b"\n" not in self._buf:
            left = deadline - time.monotonic()
            if left <= 0:
                return None
            self._sock.settimeout(left)
            try:
                chunk = self._sock.recv(65536)
            except TimeoutError:
                return None
            if not chunk:
                raise LabError(f"{self.path} closed the connection")
            self._buf += chunk
        line, self._buf = self._buf.split(b"\n", 1)
        if not line.strip():
            return self.recv(deadline)
        obj = json.loads(line)
        if not isinstance(obj, dict):
            raise LabError(f"{self.path} sent a non-object: {line!r}")
        return obj

    def close(self) -> None:
        self._sock.close()


class Qmp:
    """A QMP session: commands with ids, events kept until someone waits for them."""

    def __init__(self, path: Path, timeout: float = 10.0) -> None:
        self._conn = LineSocket(path, timeout)
        self._next_id = 0
        self.events: list[dict[str, Any]] = []
        greeting = self._conn.recv(time.monotonic() + timeout)
        if greeting is None or "QMP" not in greeting:
            raise LabError(f"no QMP greeting on {path}: {greeting}")
        self.version = greeting["QMP"].get("version", {})
        self.command("qmp_capabilities")

    def command(self, name: str, *, timeout: float = 30.0, **args: Any) -> Any:
        """Run QMP command `name` and return its "return" value (raises QmpError)."""
        self._next_id += 1
        msg_id = f"lab-{self._next_id}"
        msg: dict[str, Any] = {"execute": name, "id": msg_id}
        if args:
            msg["arguments"] = args
        self._conn.send(msg)
        deadline = time.monotonic() + timeout
        while True:
            reply = self._conn.recv(deadline)
            if reply is None:
                raise LabError(f"QMP {name}: no reply within {timeout}s")
            if "event" in reply:
                self._keep(reply)
            elif reply.get("id") == msg_id:
                if "error" in reply:
                    raise QmpError(name, reply["error"])
                return reply.get("return")

    def wait_event(self, name: str, timeout: float = 30.0, **match: Any) -> dict[str, Any]:
        """Wait for (and consume) event `name` whose data has every `match` key/value."""

        def matches(ev: dict[str, Any]) -> bool:
            data = ev.get("data", {})
            return ev.get("event") == name and all(data.get(k) == v for k, v in match.items())

        deadline = time.monotonic() + timeout
        while True:
            for ev in self.events:
                if matches(ev):
                    self.events.remove(ev)
                    return ev
            reply = self._conn.recv(deadline)
            if reply is None:
                raise LabError(f"QMP event {name} {match} did not come within {timeout}s")
            if "event" in reply:
                self._keep(reply)

    def _keep(self, event: dict[str, Any]) -> None:
        self.events.append(event)
        del self.events[:-MAX_EVENTS]

    def close(self) -> None:
        self._conn.close()
