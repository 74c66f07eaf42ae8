"""The operator's session to the API server (`handlers.login`): a burst of requests shares at
most `--api-connections` plus the watch streams' share of connections, reused, with the
credentials kopf found. kopf's own session opened one connection per request in flight (1,000
at a start with 1,000 disks, each with a 128 KiB TLS buffer)."""

from __future__ import annotations

import asyncio
import logging
from types import SimpleNamespace
from typing import Any

import kopf
import pytest
from aiohttp import web

from lunbridge_operator.handlers import login as login_module

REQUESTS = 60


@pytest.fixture
async def api_server() -> Any:
    """A stand-in API server on loopback that counts connections and requests in flight."""
    seen: dict[str, Any] = {"peers": set(), "in_flight": 0, "most": 0, "auth": set()}

    async def answer(request: web.Request) -> web.Response:
        seen["peers"].add(request.transport.get_extra_info("peername"))  # type: ignore[union-attr]
        seen["auth"].add(request.headers.get("Authorization"))
        seen["in_flight"] += 1
        seen["most"] = max(seen["most"], seen["in_flight"])
        await asyncio.sleep(0.02)
        seen["in_flight"] -= 1
        return web.json_response({"kind": "Status"})

    app = web.Application()
    app.router.add_get("/api", answer)
    runner = web.AppRunner(app)
    await runner.setup()
    site = web.TCPSite(runner, "127.0.0.1", 0)
    await site.start()
    port = site._server.sockets[0].getsockname()[1]  # type: ignore[union-attr]
    yield f"http://127.0.0.1:{port}", seen
    await runner.cleanup()


async def test_a_burst_of_requests_shares_a_bounded_pool_of_connections(
    api_server: tuple[str, dict[str, Any]], monkeypatch: pytest.MonkeyPatch
) -> None:
    server, seen = api_server
    found = kopf.ConnectionInfo(server=server, scheme="Bearer", token="the-token")
    monkeypatch.setattr(kopf, "login_via_client", lambda **_: found)
    config = SimpleNamespace(api_connections=2)
    limit = login_module.connection_limit(config)  # type: ignore[arg-type]
    assert limit == 2 + login_module.WATCH_STREAMS

    context = await login_module.login(
        memo=SimpleNamespace(config=config), settings=kopf.OperatorSettings(), logger=logging.getLogger("t")
    )
    assert isinstance(context, kopf.AiohttpSession)
    assert context.server == server
    session = context.aiohttp_session
    try:

        async def get() -> int:
            async with session.get(f"{server}/api") as response:
                return response.status

        statuses = await asyncio.gather(*(get() for _ in range(REQUESTS)))
    finally:
        await session.close()
    assert statuses == [200] * REQUESTS
    assert seen["most"] <= limit < REQUESTS
    assert len(seen["peers"]) <= limit  # the connections were reused, not one per request
    assert seen["auth"] == {"Bearer the-token"}


async def test_no_credentials_found_is_left_to_kopf_to_report(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(kopf, "login_via_client", lambda **_: None)
    memo = SimpleNamespace(config=SimpleNamespace(api_connections=64))
    settings, logger = kopf.OperatorSettings(), logging.getLogger("t")
    found = await login_module.login(memo=memo, settings=settings, logger=logger)
    assert found is None
