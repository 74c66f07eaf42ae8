"""An operator of the test's own, to kill: started with the operator's fault injection
(LUNBRIDGE_CRASH_AFTER_STEP=<Kind>:<step>, or another variable), found dead, started again as
the same pod. Tests that use it must not use the module-wide operator."""

from __future__ import annotations

import uuid
from dataclasses import dataclass, field
from pathlib import Path

from tests.integration.operator import observe
from tests.lab import operator as operator_lab
from tests.lab import procs
from tests.lab.lab import LabState

CRASH = "LUNBRIDGE_CRASH_AFTER_STEP"


@dataclass
class Operator:
    """The operator of one test: started, killed by its own fault injection, started again.

    Every start is the same pod's container restarted (kopf's peering identity POD_ID is the
    pod name): the new process takes over the peering entry the killed one left. A process
    of another identity would pause until that entry's lease ran out (up to 60 s)."""

    lab: LabState
    pod: str = field(default_factory=lambda: f"lunbridge-operator-{uuid.uuid4().hex[:6]}")

    def start(self, crash_after: str | None = None, kind: str = "VirtualDisk", **env: str) -> None:
        """Start it (to kill itself after step `crash_after` of a `kind` object), with `env`."""
        if crash_after:
            env[CRASH] = f"{kind}:{crash_after}"
        operator_lab.start(self.lab, extra_env={"POD_ID": self.pod, **env})

    def wait_dead(self, timeout: float = 60) -> None:
        lab_dir = Path(self.lab.lab_dir)
        observe.eventually(
            lambda: procs.read_pid(lab_dir, operator_lab.NAME) is None, timeout, "the operator killed itself"
        )
        log = procs.log_file(lab_dir, operator_lab.NAME).read_text(errors="replace")
        assert "Traceback" not in log[-3000:], log[-3000:]  # it died of SIGKILL, not of an error

    def stop(self) -> None:
        operator_lab.stop(self.lab)
