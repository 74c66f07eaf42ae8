"""kopf's login to the API server, with a bounded pool of connections.

Why it exists: kopf's own HTTP session has no connection limit, so every request in flight
opens a TLS connection of its own, each holding asyncio's 256 KiB TLS read buffer. A burst
(1,000 VirtualDisks applied together, or resumed at a start) had about 1,000 of them open at
once: 130 MiB of the operator's 340 MiB at that moment (tracemalloc, mid-burst), and a heap
left fragmented after they closed, so the RSS at rest stayed high. Here the session holds at
most `--api-connections` (64) connections for requests besides kopf's watch streams; further
requests wait for a free one (within kopf's request timeout, 5 min), and kept-alive
connections are reused instead of a TLS handshake per request.

The credentials are the ones kopf finds by itself with the kubernetes client (in-cluster
service account, else kubeconfig); a 401 makes kopf call this again, and it closes the old
session.
"""

from __future__ import annotations

import asyncio
import logging
from typing import Any

import aiohttp
import kopf

from lunbridge_operator.config import OperatorConfig

# kopf keeps one connection per watch stream for as long as the stream lasts: one per kind with
# handlers (eight, Nodes among them), the CRDs it scans, its peering objects. They get their own
# share of the pool, so that queued requests never starve a watch, nor a watch a request.
WATCH_STREAMS = 16


def connection_limit(config: OperatorConfig) -> int:
    """Connections the session may hold at once: `config.api_connections` for requests plus
    `WATCH_STREAMS`."""
    return config.api_connections + WATCH_STREAMS


async def login(
    *,
    memo: Any,
    settings: kopf.OperatorSettings,
    logger: logging.Logger | logging.LoggerAdapter[Any],
    **_: Any,
) -> kopf.AiohttpSession | None:
    """kopf's default login (the kubernetes client's), in a session whose pool is bounded by
    `connection_limit`. None (no credentials found) lets kopf say so and retry."""
    info = await asyncio.to_thread(kopf.login_via_client, logger=logger, settings=settings)
    if info is None:
        return None
    session = aiohttp.ClientSession(
        connector=aiohttp.TCPConnector(limit=connection_limit(memo.config), ssl=info.as_ssl_context()),
        headers=info.as_http_headers(),  # the token or basic auth
        proxy=info.proxy_url,
        trust_env=info.trust_env,
    )
    return kopf.AiohttpSession(
        aiohttp_session=session,
        server=info.server,
        default_namespace=info.default_namespace,
        expiration=info.expiration,
        priority=info.priority,
    )


kopf.on.login()(login)  # registered so: kopf's decorator would hide the signature from mypy
