"""ONTAP's asynchronous jobs: a mutation answered 202 with a job link, done in the background.

A job is queued when submitted, runs its work after the simulator's job delay (`--job-delay`,
changeable through the fault knobs) in a thread of its own, under the simulator's lock, and
ends in `success`, or in `failure` carrying the ONTAP error's code and message. A caller that
gave `return_timeout=N` waits up to N seconds for the end and then answers synchronously.
Jobs live in memory only: a restarted simulator does not know the old ones.
"""

from __future__ import annotations

import logging
import threading
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any

from tests.lab.ontap import errors
from tests.lab.ontap.errors import OntapError
from tests.lab.ontap.state import new_uuid, now_iso

log = logging.getLogger("ontap-sim")
Work = Callable[[], Any]


@dataclass
class Job:
    uuid: str
    description: str
    svm: dict[str, str]
    state: str = "queued"
    message: str = ""
    code: int = 0
    error: OntapError | None = None
    result: Any = None
    start_time: str = field(default_factory=now_iso)
    end_time: str | None = None
    done: threading.Event = field(default_factory=threading.Event)

    def record(self) -> dict[str, Any]:
        out: dict[str, Any] = {
            "uuid": self.uuid,
            "description": self.description,
            "state": self.state,
            "message": self.message,
            "code": self.code,
            "start_time": self.start_time,
            "svm": dict(self.svm),
            "_links": {"self": {"href": f"/api/cluster/jobs/{self.uuid}"}},
        }
        if self.end_time is not None:
            out["end_time"] = self.end_time
        if self.error is not None:
            out["error"] = {"code": self.error.code, "message": self.error.message}
        return out


class Jobs:
    def __init__(self, lock: threading.RLock, delay: float) -> None:
        self.lock = lock
        self.delay = delay
        self.fail_next: OntapError | None = None  # a fault knob: the next job fails so
        self._jobs: dict[str, Job] = {}

    def get(self, uuid: str) -> Job | None:
        return self._jobs.get(uuid)

    def all(self) -> list[Job]:
        return list(self._jobs.values())

    def submit(self, description: str, svm: dict[str, str], work: Work) -> Job:
        job = Job(new_uuid(), description, svm)
        self._jobs[job.uuid] = job
        injected, self.fail_next = self.fail_next, None
        threading.Thread(target=self._run, args=(job, work, injected), daemon=True, name=job.uuid).start()
        return job

    def _run(self, job: Job, work: Work, injected: OntapError | None) -> None:
        done = threading.Event()
        done.wait(self.delay)
        with self.lock:
            job.state = "running"
            try:
                if injected is not None:
                    raise injected
                job.result = work()
            except OntapError as exc:
                job.state, job.error = "failure", exc
                job.message, job.code = exc.message, int(exc.code) if exc.code.isdigit() else 0
            except Exception as exc:
                log.exception("job %s (%s) crashed", job.uuid, job.description)
                job.state = "failure"
                job.error = OntapError(500, errors.UNEXPECTED_APP_ERROR, f"simulator job crashed: {exc}")
                job.message, job.code = job.error.message, int(errors.UNEXPECTED_APP_ERROR)
            else:
                job.state, job.message = "success", "success"
            job.end_time = now_iso()
        job.done.set()
