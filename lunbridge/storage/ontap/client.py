"""The ONTAP REST calls as coroutines: every call scoped to the SVM, run in the session's
bounded pool, ONTAP's errors turned into lunbridge's (with ONTAP's code kept on the error), and
jobs waited for from the event loop with a bound.

Jobs: a mutation asks ONTAP to hold its answer up to `_rest.RETURN_TIMEOUT` seconds; what is
still running then answers 202 and a job, polled every 250 ms at first, then less often (up to
every 2 s), until it succeeds, fails (its code and message become the error) or outlives the
backend's `jobTimeoutSeconds` (Busy: the job may still finish, and the next try finds its work).
"""

from __future__ import annotations

import asyncio
import contextlib
import time
from collections.abc import Collection, Mapping
from typing import Any
from urllib.parse import urlsplit

from lunbridge.errors import Busy, LunbridgeError, NotFound
from lunbridge.storage.ontap import _rest
from lunbridge.storage.ontap.config import OntapConfig
from lunbridge.storage.ontap.errors import code_of, error_for

Record = dict[str, Any]
FIRST_POLL, LAST_POLL = 0.25, 2.0  # seconds between job polls


class OntapClient:
    """The calls of one backend, on one SVM of one cluster."""

    def __init__(self, config: OntapConfig, username: str, password: str) -> None:
        parts = urlsplit(config.management_url)
        verify: bool | str = (
            str(config.ca_file) if config.tls_verify and config.ca_file else config.tls_verify
        )
        endpoint = _rest.Endpoint(parts.hostname or "", parts.port or 443, username, password, verify)
        self.config = config
        self.session = _rest.OntapSession(endpoint, config.max_concurrent_calls)

    @property
    def svm(self) -> str:
        return self.config.svm

    async def _run(self, what: str, step: Any, *args: Any, **kwargs: Any) -> Any:
        return await self.session.run(what, lambda conn: step(conn, *args, **kwargs))

    async def records(
        self, what: str, kind: str, fields: str, parents: tuple[str, ...] = (), **query: Any
    ) -> list[Record]:
        """The SVM's records of `kind` that match `query` (every page)."""
        if kind not in ("job", "svm"):
            query.setdefault("svm.name", self.svm)
        found: list[Record] = await self._run(what, _rest.records, kind, parents, fields, query)
        return found

    async def first(
        self, what: str, kind: str, fields: str, parents: tuple[str, ...] = (), **query: Any
    ) -> Record | None:
        """The one record that matches `query`, or None."""
        found = await self.records(what, kind, fields, parents, **query)
        return found[0] if found else None

    async def create(
        self,
        what: str,
        kind: str,
        body: Mapping[str, Any],
        parents: tuple[str, ...] = (),
        done: Collection[str] = (),
        **query: Any,
    ) -> Record | None:
        """POST `body` (the SVM added) and wait for its job; the record ONTAP returned, or None
        when it returned none or answered with one of the `done` codes (already there)."""
        body = {"svm": {"name": self.svm}, **body} if kind not in ("snapshot",) else dict(body)
        return await self._mutate(what, done, _rest.create, kind, parents, body, **query)

    async def modify(
        self,
        what: str,
        kind: str,
        keys: Mapping[str, Any],
        body: Mapping[str, Any],
        done: Collection[str] = (),
        **query: Any,
    ) -> Record | None:
        """PATCH the object of `keys` with `body` and wait for its job."""
        return await self._mutate(what, done, _rest.modify, kind, keys, body, **query)

    async def remove(
        self,
        what: str,
        kind: str,
        keys: Mapping[str, Any],
        parents: tuple[str, ...] = (),
        done: Collection[str] = (),
        **query: Any,
    ) -> None:
        """DELETE the object of `keys` and wait for its job. A delete of what is not there is
        success: NotFound (a 404: someone else took it first) and the `done` codes pass."""
        with contextlib.suppress(NotFound):
            await self._mutate(what, done, _rest.remove, kind, parents, keys, **query)

    async def _mutate(
        self, what: str, done: Collection[str], step: Any, *args: Any, **query: Any
    ) -> Record | None:
        try:
            answer: _rest.Answer = await self._run(what, step, *args, **query)
            if answer.job is not None:
                await self.wait(what, answer.job)
            return answer.record
        except LunbridgeError as exc:
            if code_of(exc) in done:
                return None
            raise

    async def wait(self, what: str, job: str) -> None:
        """Poll job `job` until it ends; its failure is raised as the error of `what`."""
        deadline = time.monotonic() + self.config.job_timeout
        pause = FIRST_POLL
        while True:
            state: Record = await self._run(f"reading job {job} of {what}", _rest.job_state, job)
            if state.get("state") == "success":
                return
            if state.get("state") == "failure":
                code = str(state["code"]) if state.get("code") is not None else None
                raise error_for(what, 0 if code else 500, code, str(state.get("message", "")))
            if time.monotonic() + pause > deadline:
                raise Busy(
                    f"ONTAP job {job} ({what}) is still {state.get('state', 'running')} after "
                    f"{self.config.job_timeout:g} s (jobTimeoutSeconds); the next try finds its work"
                )
            await asyncio.sleep(pause)
            pause = min(pause * 1.5, LAST_POLL)

    async def close(self) -> None:
        await self.session.close()
