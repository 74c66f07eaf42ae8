"""The two concurrency rules of the vSphere layer, with fakes instead of a vCenter: an
expired session is renewed once and the step retried once (concurrent expiries share one
re-login), and concurrent rescans of one host share the rescans that start after they ask."""

from __future__ import annotations

import asyncio
import threading
from types import SimpleNamespace
from typing import Any

import pytest
import pyVmomi

from lunbridge.errors import Conflict, Unauthenticated, Unavailable
from lunbridge.hypervisor.base import Host
from lunbridge.hypervisor.vsphere import VSphere, VSphereConfig
from lunbridge.hypervisor.vsphere.session import Api, Session

vim: Any = pyVmomi.vim
CONFIG = VSphereConfig(url="https://vc.example.com/sdk", username="svc", password="pw", insecure=True)


class FakeSessionManager:
    def __init__(self) -> None:
        self.logins = 0
        self.lock = threading.Lock()

    def Login(self, user: str, password: str, locale: Any) -> None:  # vSphere's method name
        with self.lock:
            self.logins += 1


def fake_session(manager: FakeSessionManager) -> Session:
    session = Session(CONFIG, workers=4)
    api = SimpleNamespace(content=SimpleNamespace(sessionManager=manager))

    def login() -> Any:
        session.logins += 1
        return api

    session._open = login  # type: ignore[method-assign]
    return session


async def test_expired_session_is_renewed_once_and_the_step_retried() -> None:
    manager = FakeSessionManager()
    session = fake_session(manager)
    calls: list[int] = []

    def step(api: Api) -> str:
        calls.append(manager.logins)
        if manager.logins == 0:
            raise vim.fault.NotAuthenticated()
        return "ok"

    assert await session.run("read something", step) == "ok"
    assert calls == [0, 1]
    assert manager.logins == 1


async def test_a_second_expiry_in_the_retry_is_not_retried_again() -> None:
    manager = FakeSessionManager()
    session = fake_session(manager)

    def step(api: Api) -> str:
        raise vim.fault.NotAuthenticated()

    with pytest.raises(
        Unauthenticated, match="did not accept the session of user 'svc' even after a fresh login"
    ):
        await session.run("read something", step)
    assert manager.logins == 1


async def test_concurrent_expiries_share_one_login() -> None:
    manager = FakeSessionManager()
    session = fake_session(manager)
    barrier = threading.Barrier(4)

    def step(api: Api) -> int:
        if manager.logins == 0:
            barrier.wait(timeout=5)  # all four fail with the same expired session
            raise vim.fault.NotAuthenticated()
        return manager.logins

    assert await asyncio.gather(*(session.run("read", step) for _ in range(4))) == [1, 1, 1, 1]
    assert manager.logins == 1


async def test_concurrent_rescans_of_a_host_are_coalesced() -> None:
    client = VSphere(CONFIG)
    host = Host(name="esx1", id="host-1", cluster=None)
    rescans: list[str] = []

    async def run(what: str, step: Any) -> None:
        rescans.append(what)
        await asyncio.sleep(0.05)

    client.session.run = run  # type: ignore[method-assign,assignment]
    await asyncio.gather(*(client.rescan(host) for _ in range(10)))
    # the first caller's rescan, then one more for everyone who asked while it ran
    assert len(rescans) == 2
    await client.rescan(host)
    assert len(rescans) == 3
    assert len(client._rescans) == 0  # no bookkeeping is kept for a host nobody rescans
    await client.rescan(host, "vmhba64")  # one adapter: never coalesced
    assert rescans[-1] == "rescan adapter vmhba64 of host esx1"


async def test_tasks_are_polled_until_they_finish() -> None:
    session = fake_session(FakeSessionManager())
    states = iter(["queued", "running", "running", "success"])

    class Task:
        _moId = "task-1"

        @property
        def info(self) -> Any:
            return SimpleNamespace(state=next(states), result="done", error=None)

    assert await session.wait_task(Task(), "reconfigure VM x") == "done"


async def test_a_failed_task_raises_its_fault_translated() -> None:
    session = fake_session(FakeSessionManager())
    fault = vim.fault.InvalidDeviceBacking(msg="LUN is not visible on host esx1")

    class Task:
        _moId = "task-2"
        info = SimpleNamespace(state="error", result=None, error=fault)

    with pytest.raises(Conflict, match=r"cannot attach x: .*LUN is not visible on host esx1"):
        await session.wait_task(Task(), "attach x")


async def test_a_task_that_never_ends_is_unavailable() -> None:
    session = fake_session(FakeSessionManager())
    session.task_timeout = 0.1

    class Task:
        _moId = "task-3"
        info = SimpleNamespace(state="running", result=None, error=None)

    with pytest.raises(Unavailable, match="task task-3 is still running after"):
        await session.wait_task(Task(), "attach x")
