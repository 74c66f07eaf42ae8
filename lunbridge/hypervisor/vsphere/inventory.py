"""Blocking reads and small changes of vCenter's inventory: VMs by UUID or name, the host a
VM runs on (read fresh every time: VMs move), a host's cluster, its FC and iSCSI initiators,
iSCSI send targets and HBA rescans.

Each function is one step run in the session's worker pool; it takes the `Api` handle and
returns the typed dataclasses of `lunbridge.hypervisor.base`, so pyVmomi objects stop here.
"""

from __future__ import annotations

from typing import Any

from lunbridge import san
from lunbridge.errors import Conflict, NotFound
from lunbridge.hypervisor.base import Host, Initiator, Vm
from lunbridge.hypervisor.vsphere._vmomi import vim
from lunbridge.hypervisor.vsphere.refs import Portal, VmQuery, uuid_spellings
from lunbridge.hypervisor.vsphere.session import Api
from lunbridge.san import Transport

_VM_PATHS = ("name", "config.uuid", "config.instanceUuid", "runtime.host")


def host_of(api: Api, host_obj: Any) -> Host:
    """A Host with its cluster's name (None for a standalone host)."""
    values = api.props(host_obj, ("name", "parent"))
    parent = values.get("parent")
    cluster = None
    if isinstance(parent, vim.ClusterComputeResource):
        cluster = str(api.props(parent, ("name",))["name"])
    return Host(name=str(values["name"]), id=host_obj._moId, cluster=cluster)


def _vm(api: Api, vm_obj: Any, values: dict[str, Any] | None = None) -> Vm:
    values = values if values is not None else api.props(vm_obj, _VM_PATHS)
    host_obj = values.get("runtime.host")
    if host_obj is None:
        raise Conflict(f"VM {values.get('name', vm_obj._moId)} has no host (it is not registered on one)")
    instance = values.get("config.instanceUuid")
    return Vm(
        name=str(values["name"]),
        id=vm_obj._moId,
        bios_uuid=str(values.get("config.uuid") or "").lower(),
        instance_uuid=str(instance).lower() if instance else None,
        host=host_of(api, host_obj),
    )


def find_vm(api: Api, query: VmQuery, url: str) -> Vm:
    """The VM `query` asks for; NotFound if none, Conflict if a name is ambiguous."""
    index = api.content.searchIndex
    if query.uuid is not None:
        kinds = (False,) if query.bios_only else (False, True)
        for instance in kinds:
            for spelling in uuid_spellings(query.uuid):  # FindByUuid is case-sensitive
                found = index.FindByUuid(None, spelling, True, instance)
                if found is not None:
                    return _vm(api, found)
        # last resort, whatever case vCenter stored the UUID in: compare every VM's
        for values in api.find_all("VirtualMachine", _VM_PATHS).values():
            uuids = {values.get("config.uuid")} | (
                set() if query.bios_only else {values.get("config.instanceUuid")}
            )
            if query.uuid in {str(u).lower() for u in uuids if u}:
                return _vm(api, values["_obj"], values)
    else:
        matches = [
            v for v in api.find_all("VirtualMachine", _VM_PATHS).values() if v.get("name") == query.name
        ]
        if len(matches) > 1:
            ids = ", ".join(sorted(v["_obj"]._moId for v in matches))
            raise Conflict(f"{len(matches)} VMs are named {query.name!r} ({ids}); refer to it by BIOS UUID")
        if matches:
            return _vm(api, matches[0]["_obj"], matches[0])
    raise NotFound(
        f"no VM {query.describe()} in vCenter {url}; check the Node's providerID "
        "(vsphere://<BIOS UUID>) and that the vSphere account can see the VM"
    )


def current_vm(api: Api, vm_id: str) -> Vm:
    """The VM `vm_id` as it is now (its host re-read: it may have moved)."""
    return _vm(api, api.ref("VirtualMachine", vm_id))


def find_host(api: Api, name: str, url: str) -> Host:
    """The host named `name`; NotFound if vCenter has none."""
    for values in api.find_all("HostSystem", ("name",)).values():
        if values.get("name") == name:
            return host_of(api, values["_obj"])
    raise NotFound(f"no host named {name!r} in vCenter {url}; check the InitiatorGroup's spec.hosts")


def cluster_hosts(api: Api, host: Host) -> list[Host]:
    """Every host of `host`'s cluster (just `host` when it is standalone), sorted by name."""
    parent = api.props(api.ref("HostSystem", host.id), ("parent",)).get("parent")
    if not isinstance(parent, vim.ClusterComputeResource):
        return [host]
    values = api.props(parent, ("name", "host"))
    hosts = api.props_many(values.get("host") or [], ("name",))
    cluster = str(values["name"])
    return sorted(
        (Host(name=str(v["name"]), id=moref, cluster=cluster) for moref, v in hosts.items()),
        key=lambda h: h.name,
    )


def _adapters(api: Api, host: Host) -> list[Any]:
    values = api.props(api.ref("HostSystem", host.id), ("config.storageDevice.hostBusAdapter",))
    return list(values.get("config.storageDevice.hostBusAdapter") or [])


def host_initiators(api: Api, host: Host) -> list[Initiator]:
    """Every FC port (WWPN, WWNN) and iSCSI adapter (IQN) of `host`, by adapter device."""
    return initiators_of(host, _adapters(api, host))


def initiators_of(host: Host, adapters: list[Any]) -> list[Initiator]:
    """`host_initiators` from the host's storage adapters as vCenter lists them."""
    out: list[Initiator] = []
    for hba in sorted(adapters, key=lambda h: str(h.device)):
        if isinstance(hba, vim.host.FibreChannelHba):
            out.append(
                Initiator(
                    transport=Transport.FCP,
                    address=san.wwn(int(hba.portWorldWideName)),
                    host=host.name,
                    adapter=str(hba.device),
                    node_name=san.wwn(int(hba.nodeWorldWideName)),
                )
            )
        elif isinstance(hba, vim.host.InternetScsiHba) and hba.iScsiName:
            out.append(
                Initiator(
                    transport=Transport.ISCSI,
                    address=san.iqn(str(hba.iScsiName)),
                    host=host.name,
                    adapter=str(hba.device),
                )
            )
    return out


def ensure_send_target(api: Api, host: Host, portal: Portal) -> list[str]:
    """Add `portal` to the send targets of every iSCSI adapter of `host` that lacks it; the
    adapters changed. NotFound if the host has no iSCSI adapter at all."""
    adapters = [hba for hba in _adapters(api, host) if isinstance(hba, vim.host.InternetScsiHba)]
    if not adapters:
        raise NotFound(
            f"host {host.name} has no iSCSI adapter; enable its software iSCSI adapter in vSphere "
            f"so it can reach portal {portal}"
        )
    system = _storage_system(api, host)
    changed: list[str] = []
    for hba in adapters:
        targets = hba.configuredSendTarget or []
        if any(portal.same(str(t.address), t.port) for t in targets):
            continue
        target = vim.host.InternetScsiHba.SendTarget(address=portal.address, port=portal.port)
        system.AddInternetScsiSendTargets(iScsiHbaDevice=hba.device, targets=[target])
        changed.append(str(hba.device))
    return changed


def has_send_target(adapters: list[Any], portal: Portal) -> bool:
    """Every iSCSI adapter among `adapters` (and there is one) has `portal` as a send target."""
    iscsi = [hba for hba in adapters if isinstance(hba, vim.host.InternetScsiHba)]
    return bool(iscsi) and all(
        any(portal.same(str(t.address), t.port) for t in hba.configuredSendTarget or []) for hba in iscsi
    )


def _storage_system(api: Api, host: Host, system_id: str | None = None) -> Any:
    if system_id is not None:
        return api.ref("HostStorageSystem", system_id)
    return api.props(api.ref("HostSystem", host.id), ("configManager.storageSystem",))[
        "configManager.storageSystem"
    ]


def rescan(api: Api, host: Host, adapter: str | None, system_id: str | None = None) -> None:
    """Rescan every HBA of `host`, or only `adapter` (NotFound if the host has no such);
    `system_id`: the host's storage system, when known (else read)."""
    system = _storage_system(api, host, system_id)
    if adapter is None:
        system.RescanAllHba()
        return
    try:
        system.RescanHba(hbaDevice=adapter)
    except vim.fault.NotFound:
        raise NotFound(
            f"host {host.name} has no storage adapter {adapter!r}; rescan all adapters instead"
        ) from None
