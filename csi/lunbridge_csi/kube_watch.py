"""One Kubernetes watch as an async iterator, on the official (synchronous) client.

The client's watch is a blocking stream, so it runs in a daemon thread that hands each event to
the event loop, as the node channel's does (`channel_kube.py`). Daemon threads and not the
default executor: a watch holds its thread for as long as it lasts, and the executor's few
threads serve every other API call. Every watch has a time limit (the server ends it after
`seconds`, the client gives up reading a little later), and closing the iterator shuts the
connection's socket (`Watch.stop`), so its thread ends at once instead of at the next event.
"""

from __future__ import annotations

import asyncio
import contextlib
import math
import threading
from collections.abc import AsyncGenerator, Callable
from typing import Any

import kubernetes.watch
from kubernetes.client.exceptions import ApiException

from lunbridge.errors import Unavailable
from lunbridge.kubeapi import translate

watch_module: Any = kubernetes.watch  # untyped, like `lunbridge.kubeapi.client`
CONNECT_SECONDS = 10.0
READ_SLACK_SECONDS = 10.0  # the client waits this much longer than the server's own limit
_END = object()


class Expired(Unavailable):
    """The watch's resourceVersion is too old (410 Gone): list or read again, then watch anew."""


async def events(
    call: Callable[..., Any], *args: Any, what: str, since: str | None, seconds: float, **query: Any
) -> AsyncGenerator[tuple[str, dict[str, Any]], None]:
    """(type, object) of each event of a watch on list call `call(*args, **query)`: ADDED,
    MODIFIED, DELETED or BOOKMARK, the object as the API server sent it (camelCase dict). From
    resourceVersion `since` (None: the current objects first, as ADDED). Ends normally when the
    server ends the watch (after `seconds`, at least 1); raises Expired at 410 Gone and the
    error `translate` makes of any other failure (`what` names the watch in it)."""
    loop = asyncio.get_running_loop()
    queue: asyncio.Queue[Any] = asyncio.Queue()
    watch = watch_module.Watch()
    limit = max(1, math.ceil(seconds))
    if since:
        query["resource_version"] = since
    query.update(timeout_seconds=limit, _request_timeout=(CONNECT_SECONDS, limit + READ_SLACK_SECONDS))

    def hand(item: object) -> None:
        with contextlib.suppress(RuntimeError):  # the loop is closed: nobody waits any more
            loop.call_soon_threadsafe(queue.put_nowait, item)

    def stream() -> None:
        try:
            for event in watch.stream(call, *args, **query):
                hand((event["type"], event["raw_object"]))
        except ApiException as exc:
            gone = exc.status == 410
            hand(Expired(f"{what}: resourceVersion {since} expired") if gone else translate(what, exc))
        except Exception as exc:  # the stream's connection errors, whatever their class
            hand(translate(what, exc))
        finally:
            hand(_END)

    threading.Thread(target=stream, name=what, daemon=True).start()
    try:
        while (item := await queue.get()) is not _END:
            if isinstance(item, Exception):
                raise item
            yield item
    finally:
        watch.stop()
