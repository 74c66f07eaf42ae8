"""The real client's watches (`lunbridge_csi.kube_watch`, `Kube.changes`, the Node index behind
`Kube.node_by_id`) on a stand-in for the official client's list calls: one object by its name
from a resourceVersion with a time limit, a deletion as None, an expired version or a refused
watch as the end of the stream, a closed stream shutting its connection, and Nodes listed once
then followed by their watch."""

from __future__ import annotations

import asyncio
import http.server
import json
import threading
from collections.abc import Iterator
from types import SimpleNamespace
from typing import Any, ClassVar

import kubernetes
import pytest
from kubernetes.client.exceptions import ApiException

from lunbridge.errors import Unavailable
from lunbridge_csi import kube_watch
from lunbridge_csi.kube import Kube


def disk(version: int) -> dict[str, Any]:
    return {"metadata": {"name": "pvc-1", "resourceVersion": str(version)}, "status": {"phase": "Ready"}}


class Socket:
    def __init__(self) -> None:
        self.shut = threading.Event()

    def shutdown(self, how: int) -> None:
        self.shut.set()


class Response:
    """A watch's HTTP response as the client returns it unread: one JSON event a line; with
    `hold`, it then waits, as a live watch does, until its socket is shut."""

    status = 200

    def __init__(self, events: list[dict[str, Any]], hold: bool = False) -> None:
        self.events = events
        self.hold = hold
        self.connection = SimpleNamespace(sock=Socket())
        self.finished = threading.Event()

    def stream(self, amt: Any = None, decode_content: Any = None) -> Iterator[bytes]:
        try:
            for event in self.events:
                yield (json.dumps(event) + "\n").encode()
            if self.hold:
                self.connection.sock.shut.wait(10)
                raise ConnectionError("the socket was shut")
        finally:
            self.finished.set()

    def close(self) -> None:
        pass

    def release_conn(self) -> None:
        pass


class Api:
    """`list_cluster_custom_object` and `list_node`: each call's arguments kept, watches
    answered from `responses` in order, Node LISTs from `nodes`. (Their return annotation must
    name no client model: the client's Watch decodes events into the type a list call returns.)"""

    def __init__(self, *responses: Response | Exception) -> None:
        self.responses = list(responses)
        self.calls: list[dict[str, Any]] = []
        self.nodes: list[dict[str, Any]] = []

    def list_cluster_custom_object(self, *args: Any, **kwargs: Any) -> Any:
        self.calls.append({"args": args, **kwargs})
        answer = self.responses.pop(0)
        if isinstance(answer, Exception):
            raise answer
        return answer

    def list_node(self, **kwargs: Any) -> Any:
        if kwargs.get("watch"):
            return self.list_cluster_custom_object(**kwargs)
        self.calls.append(kwargs)
        body = {"metadata": {"resourceVersion": "10"}, "items": self.nodes}
        return SimpleNamespace(data=json.dumps(body).encode())


def kube_on(api: Api) -> Kube:
    kube = Kube(kubernetes.client.ApiClient())
    kube._custom = kube._watch_custom = api
    kube._core = kube._watch_core = api
    return kube


async def collected(kube: Kube, since: str | None = "4") -> list[dict[str, Any] | None]:
    return [body async for body in kube.changes("virtualdisks", "pvc-1", since, 29.5)]


async def test_changes_watch_one_object_by_name_from_a_version_and_say_none_for_a_deletion() -> None:
    events = [{"type": t, "object": disk(v)} for t, v in (("ADDED", 5), ("MODIFIED", 6), ("DELETED", 7))]
    api = Api(Response(events))
    assert await collected(kube_on(api)) == [disk(5), disk(6), None]
    [call] = api.calls
    assert call["args"] == ("lunbridge.io", "v1alpha1", "virtualdisks")
    assert call["field_selector"] == "metadata.name=pvc-1"
    assert call["resource_version"] == "4"
    assert call["timeout_seconds"] == 30  # the server ends it; the client reads a little longer
    assert call["_request_timeout"][1] > 30
    assert call["watch"] is True


async def test_without_a_version_the_watch_starts_from_the_current_object() -> None:
    api = Api(Response([{"type": "ADDED", "object": disk(9)}]))
    assert await collected(kube_on(api), since=None) == [disk(9)]
    assert "resource_version" not in api.calls[0]


@pytest.mark.parametrize(
    "failure",
    [
        Response([{"type": "ERROR", "object": {"code": 410, "reason": "Expired", "message": "too old"}}]),
        ApiException(status=403, reason="Forbidden"),
        ConnectionRefusedError("connection refused"),
    ],
    ids=["410-gone", "refused", "unreachable"],
)
async def test_an_expired_version_or_a_failed_watch_ends_the_stream_without_an_error(
    failure: Response | Exception,
) -> None:
    assert await collected(kube_on(Api(failure))) == []


async def test_events_say_which_failure_ended_the_watch() -> None:
    expired = Response([{"type": "ERROR", "object": {"code": 410, "reason": "Expired", "message": "old"}}])
    api = Api(expired, ApiException(status=500, reason="Internal"))
    for error in (kube_watch.Expired, Unavailable):
        with pytest.raises(error):
            async for _ in kube_watch.events(api.list_cluster_custom_object, what="w", since="1", seconds=5):
                pass


async def test_closing_the_stream_shuts_its_connection_and_ends_its_thread() -> None:
    response = Response([{"type": "MODIFIED", "object": disk(5)}], hold=True)
    stream = kube_on(Api(response)).changes("virtualdisks", "pvc-1", "4", 60)
    assert await anext(stream) == disk(5)
    await stream.aclose()
    assert response.connection.sock.shut.is_set()
    assert await asyncio.to_thread(response.finished.wait, 5)


async def test_nodes_are_listed_once_and_then_followed_by_their_watch() -> None:
    def node(name: str, provider_id: str, version: int) -> dict[str, Any]:
        return {
            "metadata": {"name": name, "resourceVersion": str(version)},
            "spec": {"providerID": provider_id},
        }

    later = Response([{"type": "ADDED", "object": node("node-b", "vsphere://b", 11)}], hold=True)
    api = Api(later)
    api.nodes = [node("node-a", "vsphere://a", 9)]
    kube = kube_on(api)
    try:
        assert await kube.node_by_id("vsphere://a") == "node-a"
        for _ in range(200):
            if "vsphere://b" in kube.nodes._names:
                break
            await asyncio.sleep(0.005)
        assert await kube.node_by_id("vsphere://b") == "node-b"
        assert await kube.node_by_id("node-a") == "node-a"
        lists = [c for c in api.calls if not c.get("watch")]
        watches = [c for c in api.calls if c.get("watch")]
        assert lists == [{"_preload_content": False}]
        assert [w["resource_version"] for w in watches] == ["10"]
        assert watches[0]["allow_watch_bookmarks"] is True
    finally:
        kube.nodes.close()
    assert await asyncio.to_thread(later.finished.wait, 5)


class Server(http.server.BaseHTTPRequestHandler):
    """A plain-HTTP API server on loopback: a watch gets one event and the end of its stream,
    any other GET a VirtualDisk; each request's client port is kept."""

    protocol_version = "HTTP/1.1"
    ports: ClassVar[list[tuple[str, int]]] = []

    def do_GET(self) -> None:
        watch = "watch=true" in self.path
        self.ports.append(("watch" if watch else "get", self.client_address[1]))
        event = {"type": "MODIFIED", "object": disk(5)}
        found = {**disk(5), "spec": {"size": "1Gi"}}
        body = (json.dumps(event) + "\n" if watch else json.dumps(found)).encode()
        self.send_response(200)
        self.send_header("Content-Type", "application/json")
        self.send_header("Content-Length", str(len(body)))
        self.end_headers()
        self.wfile.write(body)

    def log_message(self, *args: Any) -> None:
        pass


async def test_a_call_after_a_watch_reuses_its_connection_instead_of_connecting_again() -> None:
    server = http.server.ThreadingHTTPServer(("127.0.0.1", 0), Server)
    threading.Thread(target=server.serve_forever, daemon=True).start()
    Server.ports = []
    try:
        configuration = kubernetes.client.Configuration()
        configuration.host = f"http://127.0.0.1:{server.server_address[1]}"
        kube = Kube(kubernetes.client.ApiClient(configuration))
        await kube.get("pvc-1")
        assert [body async for body in kube.changes("virtualdisks", "pvc-1", "4", 5)] == [disk(5)]
        await kube.get("pvc-1")
        [(_, first), (_, watched), (_, second)] = Server.ports
        assert second == first  # the watch's connection, closed when it ended, was not the call's
        assert watched != first
    finally:
        server.shutdown()
        server.server_close()
