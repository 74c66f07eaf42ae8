"""The HTTPS front: TLS, HTTP Basic authentication, the schema gate, faults, and the answer.

Every request passes, in order: authentication (401 with an ONTAP error body), the fault
knobs, the route, the query gate (only the endpoint's fields and parameters), the body gate
(`schema.check_body` against the endpoint's netapp-ontap schema), the handler under the
simulator's lock (after a cheap check that tgtd still holds the simulator's targets), and
the answer gate: every record sent is checked against the schema's gettable fields, and a
record that fails is a simulator bug, answered 500 and logged with `SIMULATOR BUG` (the
tests fail on that line). The password never appears in a log line.

The fault knobs live outside `/api`, at `/_sim/faults` (README "Fault knobs"), and
`/_sim/targets` names the tgt target that serves each iSCSI igroup.
"""

from __future__ import annotations

import base64
import binascii
import contextlib
import hmac
import json
import logging
import socket
import ssl
import threading
import time
import urllib.parse
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from typing import Any

from netapp_ontap.models.job_link import JobLinkSchema

from tests.lab.ontap import errors, routes, schema
from tests.lab.ontap.errors import OntapError
from tests.lab.ontap.query import CONTROL
from tests.lab.ontap.sim import Json, Request, Response, Sim, has_iscsi, target_name

log = logging.getLogger("ontap-sim")


class Faults:
    """One-shot faults a test arms through `POST /_sim/faults`."""

    def __init__(self) -> None:
        self.lock = threading.Lock()
        self.fail_next: Json | None = None
        self.drop_next_connection = False

    def take_drop(self) -> bool:
        with self.lock:
            drop, self.drop_next_connection = self.drop_next_connection, False
            return drop

    def take_failure(self, method: str, path: str) -> OntapError | None:
        with self.lock:
            armed = self.fail_next
            if (
                armed is None
                or armed.get("method", method).upper() != method
                or armed.get("path", path) != path
            ):
                return None
            self.fail_next = None
        status = int(armed.get("status", 500))
        return OntapError(
            status, str(armed.get("code", "65562")), str(armed.get("message", "injected fault"))
        )


class SimServer(ThreadingHTTPServer):
    daemon_threads = True

    def __init__(self, address: tuple[str, int], sim: Sim, context: ssl.SSLContext) -> None:
        super().__init__(address, Handler)
        self.sim = sim
        self.faults = Faults()
        self.socket = context.wrap_socket(self.socket, server_side=True, do_handshake_on_connect=False)

    def handle_error(self, request: Any, client_address: Any) -> None:  # a failed TLS handshake, mostly
        log.info("connection from %s ended: %s", client_address, _last_error())


def _last_error() -> str:
    import sys

    return repr(sys.exc_info()[1])


class Handler(BaseHTTPRequestHandler):
    protocol_version = "HTTP/1.1"
    server: SimServer

    def log_message(self, format: str, *args: Any) -> None:
        pass  # requests are logged by _answer, without headers

    def do_GET(self) -> None:
        self._handle()

    def do_POST(self) -> None:
        self._handle()

    def do_PATCH(self) -> None:
        self._handle()

    def do_DELETE(self) -> None:
        self._handle()

    def _handle(self) -> None:
        started = time.monotonic()
        url = urllib.parse.urlsplit(self.path)
        raw = self.rfile.read(int(self.headers.get("Content-Length") or 0))
        try:
            self._authenticate()
            if url.path.startswith("/_sim/"):
                response = self._control(url.path, raw)
            else:
                if self.server.faults.take_drop():
                    log.info("%s %s: connection dropped (fault knob)", self.command, self.path)
                    self.close_connection = True
                    self.connection.shutdown(socket.SHUT_RDWR)
                    return
                injected = self.server.faults.take_failure(self.command, url.path)
                if injected is not None:
                    raise injected
                response = self._api(url, raw)
        except OntapError as exc:
            response = Response(exc.status, exc.body())
        except Exception:
            log.exception("SIMULATOR BUG: %s %s crashed", self.command, url.path)
            response = Response(500, OntapError(500, errors.UNEXPECTED_APP_ERROR, "simulator crashed").body())
        self._answer(response, started)

    def _authenticate(self) -> None:
        config = self.server.sim.config
        header = self.headers.get("Authorization", "")
        user, password = "", ""
        if header.startswith("Basic "):
            with contextlib.suppress(binascii.Error, UnicodeDecodeError):
                user, _, password = base64.b64decode(header[6:]).decode("utf-8").partition(":")
        good_user = hmac.compare_digest(user.encode(), config.username.encode())
        if not (good_user and hmac.compare_digest(password.encode(), config.password.encode())):
            raise OntapError(401, errors.NOT_AUTHORIZED, "not authorized for that command")

    def _api(self, url: urllib.parse.SplitResult, raw: bytes) -> Response:
        route, args, known = routes.find(self.command, url.path)
        if route is None:
            if known:
                raise OntapError(405, "3", f"The method {self.command} is not supported on {url.path}.")
            raise OntapError(404, errors.GENERIC_NOT_FOUND, f'API not found: "{url.path}".')
        query = dict(urllib.parse.parse_qsl(url.query, keep_blank_values=True))
        if not route.collection:
            _check_query(route, query)
        body = _body(self.command, raw)
        if self.command == "PATCH" and not body and not set(query) & route.query:
            raise errors.bad(errors.NO_VALUES, "You must provide one or more values to apply your changes.")
        if self.command in ("POST", "PATCH"):
            schema.check_body(route.schema, body, "post" if self.command == "POST" else "patch")
        request = Request(self.command, url.path, tuple(urllib.parse.unquote(a) for a in args), query, body)
        sim = self.server.sim
        with sim.lock:
            sim.ensure_plane()
            response = route.handler(sim, request)
        return _gate(route, response)

    def _control(self, path: str, raw: bytes) -> Response:
        sim, faults = self.server.sim, self.server.faults
        if path == "/_sim/targets" and self.command == "GET":
            with sim.lock:
                found = {
                    g.name: target_name(sim.config.iqn_prefix, g.name)
                    for g in sim.state.igroups.values()
                    if has_iscsi(g)
                }
            return Response(
                200, {"portal": sim.config.tgt_portal, "iqn_prefix": sim.config.iqn_prefix, "targets": found}
            )
        if path != "/_sim/faults":
            raise OntapError(404, errors.GENERIC_NOT_FOUND, f"no simulator control at {path}")
        if self.command == "DELETE":
            with faults.lock:
                faults.fail_next, faults.drop_next_connection = None, False
            sim.jobs.fail_next = None
        elif self.command == "POST":
            _arm(sim, faults, _body("POST", raw))
        armed: Json = {"fail_next": faults.fail_next, "drop_next_connection": faults.drop_next_connection}
        armed["job_fails"] = sim.jobs.fail_next.body()["error"] if sim.jobs.fail_next else None
        armed["job_delay"] = sim.jobs.delay
        return Response(200, armed)

    def _answer(self, response: Response, started: float) -> None:
        data = json.dumps(response.body).encode("utf-8")
        self.send_response(response.status)
        self.send_header("Content-Type", "application/hal+json")
        self.send_header("Content-Length", str(len(data)))
        if response.location:
            self.send_header("Location", response.location)
        if response.status == 401:
            self.send_header("WWW-Authenticate", 'Basic realm="ontap-sim"')
        self.end_headers()
        self.wfile.write(data)
        code = (
            response.body.get("error", {}).get("code", "")
            if isinstance(response.body.get("error"), dict)
            else ""
        )
        elapsed = (time.monotonic() - started) * 1000
        log.info(
            "%s %s -> %d %s(%.0f ms)",
            self.command,
            self.path,
            response.status,
            f"[{code}] " if code else "",
            elapsed,
        )


def _arm(sim: Sim, faults: Faults, body: Json) -> None:
    unknown = set(body) - {"fail_next", "drop_next_connection", "job_fails", "job_delay"}
    if unknown:
        raise errors.bad(errors.UNEXPECTED_ARGUMENT, f"unknown fault knobs {sorted(unknown)}")
    with faults.lock:
        if "fail_next" in body:
            faults.fail_next = body["fail_next"]
        if "drop_next_connection" in body:
            faults.drop_next_connection = bool(body["drop_next_connection"])
    if "job_fails" in body:
        given = body["job_fails"]
        given = {"message": given} if isinstance(given, str) else dict(given or {})
        sim.jobs.fail_next = errors.bad(
            str(given.get("code", "65552")), str(given.get("message", "injected job failure"))
        )
    if "job_delay" in body:
        sim.jobs.delay = float(body["job_delay"])


def _check_query(route: routes.Route, query: dict[str, str]) -> None:
    for key in query:
        if key in CONTROL or key in route.query:
            continue
        if route.method == "POST" and schema.gettable_path(route.schema, key):
            raise errors.bad(
                errors.POST_FILTER, f'POST does not take a query on "{key}"; give it in the body.', key
            )
        raise errors.bad(errors.UNEXPECTED_ARGUMENT, f'Unexpected argument "{key}".', key)


def _body(method: str, raw: bytes) -> Json:
    if not raw.strip():
        return {}
    try:
        body = json.loads(raw)
    except ValueError as exc:
        raise errors.bad(errors.INVALID_JSON, f"Invalid JSON: {exc}") from None
    if not isinstance(body, dict):
        raise errors.bad(errors.INVALID_JSON, "Invalid JSON: an object is expected.")
    if method in ("GET", "DELETE") and body:
        raise errors.bad(errors.BODY_NOT_ALLOWED, f"A request body is not allowed on {method}.")
    return schema.expand_dotted(body)


def _gate(route: routes.Route, response: Response) -> Response:
    """Check every record the simulator is about to send against the schema's gettable fields."""
    body = response.body
    if response.status == 202:
        problems = [schema.check_record(JobLinkSchema, body.get("job", {}))]
    elif "records" in body:
        problems = [schema.check_record(route.schema, r) for r in body["records"]]
    elif body:
        problems = [schema.check_record(route.schema, body)]
    else:
        problems = []
    found = [p for p in problems if p]
    if not found:
        return response
    log.error(
        "SIMULATOR BUG: %s %s would answer fields its schema does not allow: %s",
        route.method,
        route.pattern.pattern,
        found,
    )
    return Response(500, OntapError(500, errors.UNEXPECTED_APP_ERROR, f"simulator bug: {found[0]}").body())
