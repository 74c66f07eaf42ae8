"""One logged-in vCenter session, used from asyncio without ever blocking the event loop.

pyvmomi is synchronous: every property read is a SOAP round trip. `PooledSession` runs each
blocking step in a bounded thread pool and logs in lazily; this module adds what is vCenter's
own: the login (and a second one, once and transparently, when vCenter reports the session
expired), the logout, waiting for tasks by polling their state from the event loop (the
simulator, like a busy vCenter, may hand back a task that is still running), and turning
every pyvmomi exception into a `lunbridge.errors` error.
"""

from __future__ import annotations

import asyncio
import logging
from collections.abc import Callable, Iterable, Sequence
from typing import Any, TypeVar

from lunbridge.errors import NotFound, Unauthenticated, Unavailable
from lunbridge.hypervisor.vsphere._vmomi import SmartConnect, vim, vmodl
from lunbridge.hypervisor.vsphere.config import VSphereConfig
from lunbridge.hypervisor.vsphere.faults import fault_message, login_refused, translate
from lunbridge.hypervisor.vsphere.tls import make_context
from lunbridge.pooled import PooledSession

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


class TaskStillRunning(Unavailable):
    """A vCenter task outlived its time limit; it may still finish."""


class Session(PooledSession[Api]):
    """A vCenter session with a bounded worker pool (`workers` concurrent SOAP calls)."""

    def __init__(
        self,
        config: VSphereConfig,
        *,
        workers: int = 8,
        request_timeout: float = 300.0,
        task_timeout: float = 600.0,
    ) -> None:
        super().__init__(workers=workers, name="lunbridge-vsphere")
        self.config = config
        self._context = make_context(config)
        self._request_timeout = request_timeout
        self.task_timeout = task_timeout
        self.logins = 0  # successful logins, the first one included (for tests and metrics)

    def __repr__(self) -> str:
        return f"Session(url={self.config.url!r}, user={self.config.username!r})"

    def _attempt(self, step: Callable[[Api], T]) -> T:
        api, generation = self._current()
        try:
            return step(api)
        except vim.fault.NotAuthenticated:
            log.info("vCenter %s: the session of %s expired; logging in again", self.config.url,
                     self.config.username)  # fmt: skip
            return step(self._relogin(generation))

    def _translate(self, exc: BaseException, what: str) -> BaseException | None:
        return translate(exc, what, self.config.url, self.config.username)

    def _cause(self, error: BaseException, exc: BaseException) -> BaseException | None:
        return None if isinstance(error, Unauthenticated) else exc  # the chain would only repeat the login

    def _open(self) -> Api:
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
        self.logins += 1
        log.info("logged in to vCenter %s as %s", self.config.url, self.config.username)
        return api

    def _relogin(self, generation: int) -> Api:
        """Log in again on the same SOAP stub (so managed objects stay valid), unless another
        thread already did since `generation` was read."""
        with self._lock:
            assert self._conn is not None
            if self._generation == generation:
                try:
                    self._conn.content.sessionManager.Login(self.config.username, self.config.password, None)
                except vim.fault.InvalidLogin:
                    raise login_refused(self.config.url, self.config.username) from None
                self._generation += 1
                self.logins += 1
            return self._conn

    def _discard(self, conn: Api) -> None:
        conn.content.sessionManager.Logout()

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
                raise TaskStillRunning(
                    f"cannot {what}: vCenter task {task._moId} is still {info.state} after "
                    f"{self.task_timeout:.0f}s; vCenter or the host is overloaded, retry later"
                )
            await asyncio.sleep(delay)
            delay = min(delay * 2, 1.0)
