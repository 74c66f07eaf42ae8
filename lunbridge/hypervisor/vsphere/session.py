"""One logged-in vCenter session, used from asyncio without ever blocking the event loop.

pyvmomi is synchronous: every property read is a SOAP round trip. This module runs each
blocking step in a dedicated, bounded thread pool, logs in lazily (and again, once and
transparently, when vCenter reports the session expired), waits for tasks by polling their
state from the event loop (the simulator, like a busy vCenter, may hand back a task that is
still running), and turns every pyvmomi exception into a `lunbridge.errors` error.
"""

from __future__ import annotations

import asyncio
import logging
import threading
from collections.abc import Callable, Iterable, Sequence
from concurrent.futures import ThreadPoolExecutor
from typing import Any, TypeVar

from lunbridge.errors import NotFound, Unauthenticated, Unavailable
from lunbridge.hypervisor.vsphere._vmomi import SmartConnect, vim, vmodl
from lunbridge.hypervisor.vsphere.config import VSphereConfig
from lunbridge.hypervisor.vsphere.faults import fault_message, login_refused, translate
from lunbridge.hypervisor.vsphere.tls import make_context

log = logging.getLogger(__name__)
T = TypeVar("T")


class Api:
    """What a blocking step receives: the service content and property-collector helpers.
    Managed objects made here stay valid across a re-login (it reuses the same SOAP stub)."""

    def __init__(self, si: Any) -> None:
        self.si = si
        self.content: Any = si.RetrieveContent()
        self.stub: Any = si._stub

    def ref(self, kind: str, moref: str) -> Any:
        """The managed object `kind` (e.g. "VirtualMachine") with id `moref`."""
        return getattr(vim, kind)(moref, self.stub)

    def props(self, obj: Any, paths: Sequence[str]) -> dict[str, Any]:
        """Several properties of one object in one round trip; unset ones are left out."""
        found = self.props_many([obj], paths)
        if obj._moId not in found:
            raise NotFound(f"{obj._wsdlName} {obj._moId} does not exist in vCenter")
        return found[obj._moId]

    def props_many(self, objs: Iterable[Any], paths: Sequence[str]) -> dict[str, dict[str, Any]]:
        """Properties of several objects of one type, keyed by their moref."""
        objs = list(objs)
        if not objs:
            return {}
        pc = vmodl.query.PropertyCollector
        spec = pc.FilterSpec(
            objectSet=[pc.ObjectSpec(obj=obj, skip=False) for obj in objs],
            propSet=[pc.PropertySpec(type=type(objs[0]), pathSet=list(paths))],
        )
        return self._retrieve(spec)

    def find_all(self, kind: str, paths: Sequence[str]) -> dict[str, dict[str, Any]]:
        """Properties of every object of `kind` in the inventory (container view)."""
        manager = self.content.viewManager
        view = manager.CreateContainerView(self.content.rootFolder, [getattr(vim, kind)], True)
        try:
            pc = vmodl.query.PropertyCollector
            traverse = pc.TraversalSpec(name="view", path="view", skip=False, type=vim.view.ContainerView)
            spec = pc.FilterSpec(
                objectSet=[pc.ObjectSpec(obj=view, skip=True, selectSet=[traverse])],
                propSet=[pc.PropertySpec(type=getattr(vim, kind), pathSet=list(paths))],
            )
            return self._retrieve(spec)
        finally:
            view.Destroy()

    def _retrieve(self, spec: Any) -> dict[str, dict[str, Any]]:
        collector = self.content.propertyCollector
        out: dict[str, dict[str, Any]] = {}
        result = collector.RetrievePropertiesEx(
            specSet=[spec], options=vmodl.query.PropertyCollector.RetrieveOptions()
        )
        while result is not None:
            for item in result.objects or []:
                for missing in item.missingSet or []:
                    inner = getattr(missing.fault, "fault", None)
                    if isinstance(inner, (vim.fault.NotAuthenticated, vmodl.fault.ManagedObjectNotFound)):
                        raise inner
                values = {prop.name: prop.val for prop in item.propSet or []}
                values["_obj"] = item.obj
                out[item.obj._moId] = values
            token = result.token
            result = collector.ContinueRetrievePropertiesEx(token=token) if token else None
        return out


class Session:
    """A vCenter session with a bounded worker pool (`workers` concurrent SOAP calls)."""

    def __init__(
        self,
        config: VSphereConfig,
        *,
        workers: int = 8,
        request_timeout: float = 300.0,
        task_timeout: float = 600.0,
    ) -> None:
        self.config = config
        self._context = make_context(config)
        self._executor = ThreadPoolExecutor(max_workers=workers, thread_name_prefix="lunbridge-vsphere")
        self._request_timeout = request_timeout
        self.task_timeout = task_timeout
        self._lock = threading.Lock()
        self._api: Api | None = None
        self._generation = 0
        self.logins = 0  # successful logins, the first one included (for tests and metrics)

    def __repr__(self) -> str:
        return f"Session(url={self.config.url!r}, user={self.config.username!r})"

    async def run(self, what: str, step: Callable[[Api], T]) -> T:
        """Run the blocking `step` in the pool. `what` completes "cannot ..." in errors."""
        loop = asyncio.get_running_loop()
        return await loop.run_in_executor(self._executor, self._call, what, step)

    def _call(self, what: str, step: Callable[[Api], T]) -> T:
        try:
            api, generation = self._current()
            try:
                return step(api)
            except vim.fault.NotAuthenticated:
                log.info("vCenter %s: the session of %s expired; logging in again", self.config.url,
                         self.config.username)  # fmt: skip
                return step(self._relogin(generation))
        except BaseException as exc:
            error = translate(exc, what, self.config.url, self.config.username)
            if error is None or error is exc:
                raise
            if isinstance(error, Unauthenticated):
                raise error from None  # the chain would only repeat the login call
            raise error from exc

    def _current(self) -> tuple[Api, int]:
        with self._lock:
            if self._api is None:
                self._api = self._login()
            return self._api, self._generation

    def _login(self) -> Api:
        endpoint = self.config.endpoint
        try:
            si = SmartConnect(
                host=endpoint.host,
                port=endpoint.port,
                path=endpoint.path,
                user=self.config.username,
                pwd=self.config.password,
                sslContext=self._context,
                httpConnectionTimeout=self._request_timeout,
            )
        except vim.fault.InvalidLogin:
            raise login_refused(self.config.url, self.config.username) from None
        api = Api(si)
        self._generation += 1
        self.logins += 1
        log.info("logged in to vCenter %s as %s", self.config.url, self.config.username)
        return api

    def _relogin(self, generation: int) -> Api:
        """Log in again on the same SOAP stub (so managed objects stay valid), unless another
        thread already did since `generation` was read."""
        with self._lock:
            assert self._api is not None
            if self._generation == generation:
                try:
                    self._api.content.sessionManager.Login(self.config.username, self.config.password, None)
                except vim.fault.InvalidLogin:
                    raise login_refused(self.config.url, self.config.username) from None
                self._generation += 1
                self.logins += 1
            return self._api

    async def wait_task(self, task: Any, what: str) -> Any:
        """Poll `task` until it succeeds (its result) or fails (its fault, translated)."""
        loop = asyncio.get_running_loop()
        deadline = loop.time() + self.task_timeout
        delay = 0.02
        while True:
            info = await self.run(what, lambda _api: task.info)
            if info.state == vim.TaskInfo.State.success:
                return info.result
            if info.state == vim.TaskInfo.State.error:
                fault = info.error
                error = translate(fault, what, self.config.url, self.config.username)
                if error is None:
                    raise Unavailable(f"cannot {what}: the task failed ({fault_message(fault)})")
                raise error
            if loop.time() > deadline:
                raise Unavailable(
                    f"cannot {what}: vCenter task {task._moId} is still {info.state} after "
                    f"{self.task_timeout:.0f}s; vCenter or the host is overloaded, retry later"
                )
            await asyncio.sleep(delay)
            delay = min(delay * 2, 1.0)

    async def close(self) -> None:
        """Log out (best effort) and stop the worker threads."""
        api = self._api
        if api is not None:
            try:
                await self.run("log out", lambda a: a.content.sessionManager.Logout())
            except Exception as exc:  # a dead vCenter must not stop the shutdown
                log.debug("logout from %s failed: %s", self.config.url, exc)
            self._api = None
        self._executor.shutdown(wait=False, cancel_futures=True)
