"""vCenter's inventory as one property collector keeps it, so the questions every disk asks
(which VM has this BIOS UUID, which host runs it, which hosts share its cluster, what are a
host's storage adapters and send targets, which is its storage system) cost no SOAP call.

Read directly, those questions cost about twenty property reads per disk before its RDM, and
with many disks at once they were most of the operator's CPU (perf.md, cause 3). A long poll
(`WaitForUpdatesEx`) on a collector of our own, over every VM, host and cluster under the
root folder, keeps the mirror within one update of vCenter (the simulator sends updates every
20 ms; vCenter batches them likewise).

The mirror answers only while its collector is current. Before the first full update, and from
a failure until a new collector has caught up, every question answers None and the caller
reads vCenter directly; so does a miss (a VM made a moment ago). The mirror makes a lookup
cheaper; it is never the only way to an answer.
"""

from __future__ import annotations

import logging
import threading
from collections.abc import Callable, Iterable
from typing import Any

from lunbridge.hypervisor.base import Host, Vm
from lunbridge.hypervisor.vsphere._vmomi import vim, vmodl
from lunbridge.hypervisor.vsphere.session import Api, Session

log = logging.getLogger(__name__)

VM, HOST, CLUSTER = "VirtualMachine", "HostSystem", "ClusterComputeResource"
PATHS: dict[str, tuple[str, ...]] = {
    VM: ("name", "config.uuid", "config.instanceUuid", "runtime.host"),
    HOST: ("name", "parent", "config.storageDevice.hostBusAdapter", "configManager.storageSystem"),
    CLUSTER: ("name", "host"),
}
Objects = dict[str, dict[str, dict[str, Any]]]  # kind -> moref -> property path -> value


def empty() -> Objects:
    return {kind: {} for kind in PATHS}


def apply_update(objects: Objects, update: Any) -> None:
    """Apply one `UpdateSet` of `WaitForUpdatesEx` to `objects` (enter, modify, leave; a
    property assigned or removed)."""
    for filter_update in update.filterSet or []:
        for change in filter_update.objectSet or []:
            kind = change.obj._wsdlName
            if kind not in objects:
                continue
            moref = change.obj._moId
            if change.kind == "leave":
                objects[kind].pop(moref, None)
                continue
            values = objects[kind].setdefault(moref, {})
            for prop in change.changeSet or []:
                if prop.op in ("remove", "indirectRemove"):
                    values.pop(prop.name, None)
                else:
                    values[prop.name] = prop.val


def placement_changed(update: Any) -> bool:
    """Whether an `UpdateSet` moves a VM to another host, changes a cluster's host list, or adds
    or removes a host."""
    for filter_update in update.filterSet or []:
        for change in filter_update.objectSet or []:
            kind = change.obj._wsdlName
            if kind == HOST and change.kind in ("enter", "leave"):
                return True
            names = {prop.name for prop in change.changeSet or []}
            if change.kind == "modify" and (kind, "runtime.host") in {(VM, n) for n in names}:
                return True
            if kind == CLUSTER and "host" in names:
                return True
    return False


class InventoryMirror:
    """The VMs, hosts and clusters of one vCenter, kept by a thread of its own. `start()`,
    then ask; `close()` at the end. Every question answers None when the mirror cannot."""

    def __init__(self, session: Session, *, max_wait_seconds: int = 30) -> None:
        self._session = session
        self._max_wait = max_wait_seconds
        self._lock = threading.Lock()  # guards _objects and _current
        self._objects: Objects = empty()
        self._current = False
        self._stopping = threading.Event()
        self.synced = threading.Event()  # set while the mirror answers
        self._thread: threading.Thread | None = None
        self._collector: Any = None
        self.updates = 0  # update sets applied since start (tests, metrics)
        self.listeners: list[Callable[[], None]] = []  # told when a VM moves or a cluster's hosts change

    def __repr__(self) -> str:
        return f"InventoryMirror({self._session!r})"

    def start(self) -> None:
        self._thread = threading.Thread(target=self._run, name="lunbridge-vsphere-mirror", daemon=True)
        self._thread.start()

    def close(self) -> None:
        """Stop following (the long poll is cancelled; the thread ends on its own)."""
        self._stopping.set()
        self._forget()
        collector = self._collector
        if collector is not None:
            try:
                collector.CancelWaitForUpdates()
            except Exception as exc:  # the session may be gone already: the thread then ends on its own
                log.debug("%r: cancelling the wait failed: %s", self, exc)

    # --- following vCenter ---------------------------------------------------------------------
    def _run(self) -> None:
        delay = 0.5
        while not self._stopping.is_set():
            try:
                self._session.call_blocking("follow the vCenter inventory", self._follow)
            except Exception as exc:
                if self._stopping.is_set():
                    return
                self._forget()
                log.warning("%r: %s; reading vCenter directly until the mirror is current again", self, exc)
                self._stopping.wait(delay)
                delay = min(delay * 2, 30.0)
            else:
                delay = 0.5

    def _follow(self, api: Api) -> None:
        collector = api.content.propertyCollector.CreatePropertyCollector()
        self._collector = collector
        try:
            collector.CreateFilter(_filter_spec(api.content.rootFolder), partialUpdates=False)
            fresh: Objects | None = empty()  # the first full state, swapped in once complete
            version = ""
            options = vmodl.query.PropertyCollector.WaitOptions(maxWaitSeconds=self._max_wait)
            while not self._stopping.is_set():
                update = collector.WaitForUpdatesEx(version, options)
                if update is None:
                    continue
                version = update.version
                if fresh is not None:
                    apply_update(fresh, update)
                    if not update.truncated:
                        self._swap_in(fresh)
                        fresh = None
                else:
                    with self._lock:
                        apply_update(self._objects, update)
                    if placement_changed(update):
                        self._tell()
                self.updates += 1
        finally:
            self._collector = None
            self._destroy(collector)

    def _tell(self) -> None:
        for listener in list(self.listeners):
            try:
                listener()
            except Exception:  # a listener's bug must not stop the mirror
                log.exception("%r: a listener of placement changes failed", self)

    def _swap_in(self, objects: Objects) -> None:
        with self._lock:
            self._objects, self._current = objects, True
        self.synced.set()
        log.info("%r: following %d VMs, %d hosts and %d clusters", self,
                 len(objects[VM]), len(objects[HOST]), len(objects[CLUSTER]))  # fmt: skip

    def _forget(self) -> None:
        with self._lock:
            self._objects, self._current = empty(), False
        self.synced.clear()

    def _destroy(self, collector: Any) -> None:
        try:
            collector.DestroyPropertyCollector()
        except Exception as exc:  # gone with the session, or vCenter restarted
            log.debug("%r: cleaning up failed: %s", self, exc)

    # --- questions -----------------------------------------------------------------------------
    def vm(self, vm_id: str) -> Vm | None:
        """VM `vm_id` with the host it runs on now."""
        with self._lock:
            values = self._objects[VM].get(vm_id) if self._current else None
            return self._vm(vm_id, values) if values is not None else None

    def vm_by_uuid(self, uuid: str, bios_only: bool) -> Vm | None:
        """The VM whose BIOS UUID (or, unless `bios_only`, instance UUID) is `uuid` (any case)."""
        uuid = uuid.lower()
        paths = ("config.uuid",) if bios_only else ("config.uuid", "config.instanceUuid")
        with self._lock:
            if not self._current:
                return None
            for moref, values in self._objects[VM].items():
                if any(str(values.get(path) or "").lower() == uuid for path in paths):
                    return self._vm(moref, values)
        return None

    def host(self, host_id: str) -> Host | None:
        with self._lock:
            return self._host(host_id) if self._current else None

    def host_named(self, name: str) -> Host | None:
        with self._lock:
            if not self._current:
                return None
            moref = next((m for m, v in self._objects[HOST].items() if v.get("name") == name), None)
            return self._host(moref) if moref is not None else None

    def cluster_hosts(self, host_id: str) -> list[Host] | None:
        """Every host of host `host_id`'s cluster (just that host when standalone), by name."""
        with self._lock:
            host = self._host(host_id) if self._current else None
            if host is None:
                return None
            parent = self._objects[HOST][host_id].get("parent")
            if host.cluster is None or parent is None:
                return [host]
            members = self._hosts(ref._moId for ref in self._objects[CLUSTER][parent._moId].get("host") or [])
            return sorted(members, key=lambda h: h.name) if members is not None else None

    def adapters(self, host_id: str) -> list[Any] | None:
        """The storage adapters (HBAs) of host `host_id`, as vCenter describes them."""
        with self._lock:
            values = self._objects[HOST].get(host_id) if self._current else None
            if values is None or "config.storageDevice.hostBusAdapter" not in values:
                return None
            return list(values["config.storageDevice.hostBusAdapter"] or [])

    def storage_system(self, host_id: str) -> str | None:
        """The moref of host `host_id`'s storage system."""
        with self._lock:
            values = self._objects[HOST].get(host_id) if self._current else None
            system = values.get("configManager.storageSystem") if values is not None else None
            return str(system._moId) if system is not None else None

    # --- under the lock ------------------------------------------------------------------------
    def _vm(self, moref: str, values: dict[str, Any]) -> Vm | None:
        host_ref = values.get("runtime.host")
        host = self._host(host_ref._moId) if host_ref is not None else None
        if host is None or "name" not in values:
            return None
        instance = values.get("config.instanceUuid")
        return Vm(
            name=str(values["name"]),
            id=moref,
            bios_uuid=str(values.get("config.uuid") or "").lower(),
            instance_uuid=str(instance).lower() if instance else None,
            host=host,
        )

    def _host(self, moref: str) -> Host | None:
        values = self._objects[HOST].get(moref)
        if values is None or "name" not in values:
            return None
        parent = values.get("parent")
        cluster = None
        if parent is not None and parent._wsdlName == CLUSTER:
            found = self._objects[CLUSTER].get(parent._moId)
            if found is None or "name" not in found:
                return None  # the cluster is not mirrored (yet): ask vCenter
            cluster = str(found["name"])
        return Host(name=str(values["name"]), id=moref, cluster=cluster)

    def _hosts(self, morefs: Iterable[str]) -> list[Host] | None:
        found = [self._host(moref) for moref in morefs]
        return None if any(h is None for h in found) else [h for h in found if h is not None]


def _filter_spec(root: Any) -> Any:
    """Every VM, host and cluster under `root`, by traversal: folders into their children,
    datacenters into their host and VM folders, compute resources (clusters) into their hosts.
    Not a ContainerView: a view kept for good deadlocks the simulator, whose collect through a
    view and removal of a logged-out session's objects take its locks in opposite orders."""
    pc = vmodl.query.PropertyCollector

    def into(name: str, kind: Any, path: str, *then: str) -> Any:
        return pc.TraversalSpec(
            name=name, type=kind, path=path, skip=False, selectSet=[pc.SelectionSpec(name=n) for n in then]
        )

    traversals = [
        into("folder", vim.Folder, "childEntity", "folder", "datacenter_hosts", "datacenter_vms", "hosts"),
        into("datacenter_hosts", vim.Datacenter, "hostFolder", "folder"),
        into("datacenter_vms", vim.Datacenter, "vmFolder", "folder"),
        into("hosts", vim.ComputeResource, "host"),
    ]
    return pc.FilterSpec(
        objectSet=[pc.ObjectSpec(obj=root, skip=True, selectSet=traversals)],
        propSet=[
            pc.PropertySpec(type=getattr(vim, kind), pathSet=list(paths)) for kind, paths in PATHS.items()
        ],
    )
