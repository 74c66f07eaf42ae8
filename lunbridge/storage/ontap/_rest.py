"""The one module that imports NetApp's client library (`netapp-ontap`): its blocking calls,
made in a bounded pool of threads, and what they raise turned into lunbridge's errors.

Every call names its resource by the kind below and returns plain dicts (ONTAP's JSON), so the
rest of the backend is typed and testable without the library. Mutating calls never wait for
ONTAP's jobs here (`poll=False`): they return the job's UUID, and `client` polls it with a
bound, from the event loop, so a long job holds no thread.
"""

from __future__ import annotations

import logging
from collections.abc import Mapping
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import requests
from netapp_ontap import config
from netapp_ontap.error import NetAppRestError
from netapp_ontap.host_connection import HostConnection, LoggingAdapter
from netapp_ontap.resource import Resource
from netapp_ontap.resources.igroup import Igroup
from netapp_ontap.resources.igroup_initiator import IgroupInitiator
from netapp_ontap.resources.ip_interface import IpInterface
from netapp_ontap.resources.iscsi_credentials import IscsiCredentials
from netapp_ontap.resources.iscsi_service import IscsiService
from netapp_ontap.resources.job import Job
from netapp_ontap.resources.lun import Lun
from netapp_ontap.resources.lun_map import LunMap
from netapp_ontap.resources.snapshot import Snapshot
from netapp_ontap.resources.svm import Svm
from netapp_ontap.resources.volume import Volume

from lunbridge import redact
from lunbridge.errors import InvalidArgument, LunbridgeError, Unauthenticated, Unavailable
from lunbridge.pooled import PooledSession
from lunbridge.storage.ontap.errors import error_for

log = logging.getLogger(__name__)
config.RAISE_API_ERRORS = True

# the resources lunbridge uses, by the name its modules give them
KINDS: Mapping[str, type[Resource]] = {
    "svm": Svm,
    "iscsi_service": IscsiService,
    "ip_interface": IpInterface,
    "volume": Volume,
    "snapshot": Snapshot,
    "lun": Lun,
    "igroup": Igroup,
    "igroup_initiator": IgroupInitiator,
    "lun_map": LunMap,
    "iscsi_credentials": IscsiCredentials,
    "job": Job,
}
# a mutation holds ONTAP's answer up to this many seconds before it answers 202 and a job;
# only the resources whose calls may run as jobs take the parameter (ONTAP refuses unknown ones)
RETURN_TIMEOUT = 10
ASYNCHRONOUS = frozenset({"volume", "snapshot", "lun"})


def _held(kind: str) -> dict[str, Any]:
    return {"return_timeout": RETURN_TIMEOUT} if kind in ASYNCHRONOUS else {}


@dataclass(frozen=True)
class Answer:
    """What a mutating call returned: the record ONTAP sent back (with `return_records`), and
    the UUID of the job still doing the work (None when it is done)."""

    record: dict[str, Any] | None
    job: str | None


@dataclass(frozen=True)
class Endpoint:
    """Where the cluster's management interface is and how to trust and log in to it."""

    host: str
    port: int
    username: str
    password: str
    verify: bool | str  # True: the system's CAs; a path: that CA file; False: no verification
    timeouts: tuple[float, float] = (6.0, 45.0)  # connect, read (seconds)

    def __repr__(self) -> str:
        return f"Endpoint({self.host}:{self.port}, user {self.username})"


def read_credentials(folder: Path, where: str) -> tuple[str, str]:
    """`username` and `password` from the folder a Secret is mounted at (their values without
    the line end a file leaves); the password is registered with `redact`. Unauthenticated
    naming the missing key (never a value)."""
    values: dict[str, str] = {}
    for key in ("username", "password"):
        try:
            values[key] = (folder / key).read_text().strip()
        except (OSError, UnicodeDecodeError):
            values[key] = ""
        if not values[key]:
            raise Unauthenticated(
                f"{where} has no readable {key} in {folder} (mount the backend's Secret there)"
            )
    redact.register(values["password"])
    return values["username"], values["password"]


class OntapSession(PooledSession[HostConnection]):
    """A HostConnection to one cluster, at most `workers` calls at a time."""

    def __init__(self, endpoint: Endpoint, workers: int) -> None:
        super().__init__(workers=workers, name="ontap")
        self.endpoint = endpoint
        self.workers = workers

    def __repr__(self) -> str:
        return f"OntapSession({self.endpoint.host}:{self.endpoint.port})"

    def _open(self) -> HostConnection:
        end = self.endpoint
        conn = HostConnection(
            end.host,
            username=end.username,
            password=end.password,
            verify=end.verify,  # type: ignore[arg-type]  # requests takes a CA path too
            port=end.port,
            protocol_timeouts=end.timeouts,
        )
        session = conn.session
        session.verify = end.verify
        if isinstance(end.verify, str):
            # requests lets REQUESTS_CA_BUNDLE / CURL_CA_BUNDLE replace a session's CA file; the
            # backend's caFile must win, so the session takes nothing from the environment
            session.trust_env = False
        # one kept-alive connection per worker (the library's adapter keeps 10)
        adapter: Any = LoggingAdapter  # the library's adapter class carries no annotations
        retries = getattr(session.adapters[conn.origin], "max_retries", None)
        session.mount(conn.origin, adapter(conn, max_retries=retries, timeout=end.timeouts,
                                           pool_maxsize=self.workers))  # fmt: skip
        return conn

    def _discard(self, conn: HostConnection) -> None:
        conn.session.close()

    def _lost(self, exc: BaseException) -> bool:
        return isinstance(exc, NetAppRestError) and isinstance(
            _cause_of(exc), requests.exceptions.RequestException
        )

    def _translate(self, exc: BaseException, what: str) -> BaseException | None:
        if isinstance(exc, LunbridgeError):
            return exc
        if isinstance(exc, NetAppRestError):
            answer = exc.http_err_response
            cause = _cause_of(exc)
            if answer is not None:
                body = _json(answer.http_response)
                error = body.get("error", {}) if isinstance(body, dict) else {}
                status = answer.http_response.status_code
                return error_for(what, status, error.get("code"), error.get("message", ""))
            if isinstance(cause, requests.exceptions.RequestException):
                reason = (
                    "TLS verification failed"
                    if isinstance(cause, requests.exceptions.SSLError)
                    else "no answer"
                )
                return Unavailable(
                    f"ONTAP at {self.endpoint.host}:{self.endpoint.port} did not answer {what}: {reason} "
                    f"({type(cause).__name__})"
                )
            # the library refused before sending (a value its schema does not take): ours to fix
            return InvalidArgument(f"netapp-ontap refused {what} before sending it: {exc}")
        if isinstance(exc, requests.exceptions.RequestException):
            return Unavailable(f"ONTAP at {self.endpoint.host} did not answer {what}: {type(exc).__name__}")
        return None

    def _cause(self, error: BaseException, exc: BaseException) -> BaseException | None:
        return None  # the library's text quotes URLs and headers; the translation says what matters


def _cause_of(exc: NetAppRestError) -> BaseException | None:
    cause = getattr(exc, "cause", None)
    return cause if isinstance(cause, BaseException) else exc.__cause__


def _json(response: requests.Response) -> Any:
    try:
        return response.json()
    except ValueError:
        return {}


def _resource(kind: str, parents: tuple[str, ...], values: Mapping[str, Any]) -> Resource:
    return KINDS[kind](*parents, **values)


def records(
    conn: HostConnection, kind: str, parents: tuple[str, ...], fields: str, query: Mapping[str, Any]
) -> list[dict[str, Any]]:
    """Every record of a collection that matches `query` (pages followed), with `fields`."""
    resource: Any = KINDS[kind]  # get_collection is generated per resource class
    found = resource.get_collection(*parents, connection=conn, fields=fields, **query)
    return [item.to_dict() for item in found]


def single(conn: HostConnection, kind: str, keys: Mapping[str, Any], fields: str) -> dict[str, Any]:
    """One record by its keys (e.g. {"uuid": ...}); a missing one raises the library's error
    (404), which the session turns into NotFound."""
    made = _resource(kind, (), keys)
    made.set_connection(conn)  # get() takes no connection argument
    made.get(fields=fields)
    return dict(made.to_dict())


def _answer(response: Any) -> Answer:
    http = response.http_response
    body = _json(http)
    job = body.get("job", {}).get("uuid") if isinstance(body, dict) and http.status_code == 202 else None
    found = body.get("records") if isinstance(body, dict) else None
    return Answer(found[0] if found else None, job)


def create(
    conn: HostConnection, kind: str, parents: tuple[str, ...], body: Mapping[str, Any], **query: Any
) -> Answer:
    """POST `body` to a collection, with `return_records` (and `return_timeout` where taken)."""
    made = KINDS[kind].from_dict(dict(body), *parents)
    return _answer(made.post(poll=False, connection=conn, return_records="true", **_held(kind), **query))


def modify(
    conn: HostConnection, kind: str, keys: Mapping[str, Any], body: Mapping[str, Any], **query: Any
) -> Answer:
    """PATCH `body` onto the object of `keys` (ONTAP changes only what the body names)."""
    made = _resource(kind, (), keys)  # the library sends what changed since: the body
    for key, value in body.items():
        setattr(made, key, value)
    return _answer(made.patch(poll=False, connection=conn, **_held(kind), **query))


def remove(
    conn: HostConnection, kind: str, parents: tuple[str, ...], keys: Mapping[str, Any], **query: Any
) -> Answer:
    """DELETE the object of `keys`."""
    made = _resource(kind, parents, keys)
    return _answer(made.delete(poll=False, connection=conn, **_held(kind), **query))


def job_state(conn: HostConnection, uuid: str) -> dict[str, Any]:
    """A job's `state` (queued, running, paused, success, failure), `message` and `code`."""
    return single(conn, "job", {"uuid": uuid}, "state,message,code")
