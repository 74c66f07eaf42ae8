"""A host's LUN visibility (`HostLunLists`): answered by its SCSI topology's keys, named by its
full LUN list, which is read again only for a key it does not name yet; reads at most `within`
seconds old answer, unless the host rescanned since; a LUN that left the topology is no longer seen."""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

from lunbridge.hypervisor.base import Host
from lunbridge.hypervisor.vsphere.host_luns import HostLunLists
from lunbridge.hypervisor.vsphere.rdm import HostLun

HOST = Host(id="host-1", name="esx-1", cluster=None)


class Session:
    """Runs a read at once and records what it read."""

    def __init__(self) -> None:
        self.reads: list[str] = []

    async def run(self, what: str, call: Callable[[Any], Any]) -> Any:
        self.reads.append(what.split()[0])  # "list" (the LUNs) or "read" (the topology)
        return call(None)


class Host_:
    """What one host lists: LUNs by canonical name, each with its key."""

    def __init__(self, *naas: str) -> None:
        self.luns = {naa: f"key-vim.host.ScsiDisk-{naa[4:]}" for naa in naas}

    def full(self, api: Any, host_id: str) -> dict[str, HostLun]:
        return {
            naa: HostLun(naa, naa[4:], f"/vmfs/devices/disks/{naa}", None, key)
            for naa, key in self.luns.items()
        }

    def keys(self, api: Any, host_id: str) -> frozenset[str]:
        return frozenset(self.luns.values())


def lists(host: Host_) -> tuple[HostLunLists, Session]:
    session = Session()
    found = HostLunLists(session)  # type: ignore[arg-type]
    found._full.read = host.full
    found._keys.read = host.keys
    return found, session


async def test_the_full_list_is_read_once_to_name_the_keys_then_only_the_topology() -> None:
    host = Host_("naa.600a01", "naa.600a02")
    found, session = lists(host)
    assert await found.sees(HOST, "naa.600a01")
    assert session.reads == ["read", "list"]
    assert await found.sees(HOST, "naa.600a02")
    assert not await found.sees(HOST, "naa.600a09")
    assert session.reads == ["read", "list", "read", "read"]


async def test_a_lun_new_to_the_host_reads_the_full_list_again_once() -> None:
    host = Host_("naa.600a01")
    found, session = lists(host)
    assert not await found.sees(HOST, "naa.600a02")
    host.luns["naa.600a02"] = "key-vim.host.ScsiDisk-600a02"
    assert await found.sees(HOST, "naa.600a02")
    assert session.reads == ["read", "list", "read", "list"]
    assert await found.sees(HOST, "naa.600a02")
    assert session.reads[-1:] == ["read"]


async def test_a_key_no_full_list_names_costs_one_full_read_per_topology_read_at_most() -> None:
    host = Host_("naa.600a01")
    found, session = lists(host)
    found._keys.read = lambda api, host_id: host.keys(api, host_id) | {"key-of-a-device-with-no-name"}
    assert await found.sees(HOST, "naa.600a01")
    assert await found.sees(HOST, "naa.600a01", within=60)
    assert session.reads == ["read", "list"]


async def test_a_lun_gone_from_the_topology_is_not_seen_even_while_the_full_list_names_it() -> None:
    host = Host_("naa.600a01")
    found, session = lists(host)
    assert await found.sees(HOST, "naa.600a01")
    del host.luns["naa.600a01"]
    assert await found.sees(HOST, "naa.600a01", within=60)  # the last read, still
    assert not await found.sees(HOST, "naa.600a01")
    assert session.reads == ["read", "list", "read"]


async def test_lun_answers_from_the_full_list() -> None:
    host = Host_("naa.600a01")
    found, session = lists(host)
    lun = await found.lun(HOST, "naa.600a01")
    assert lun is not None
    assert lun.device_path == "/vmfs/devices/disks/naa.600a01"
    assert await found.lun(HOST, "naa.600a02", within=60) is None
    assert session.reads == ["list"]


async def test_after_a_rescan_no_earlier_read_answers_within_its_age() -> None:
    host = Host_("naa.600a01")
    found, session = lists(host)
    assert not await found.sees(HOST, "naa.600a02", within=60)
    host.luns["naa.600a02"] = "key-vim.host.ScsiDisk-600a02"  # the rescan revealed it
    found.rescanned(HOST.id)
    assert await found.sees(HOST, "naa.600a02", within=60)  # no "lost LUN" from the older read
    assert session.reads == ["read", "list", "read", "list"]
    assert await found.sees(HOST, "naa.600a02", within=60)
    assert session.reads[-1:] == ["list"]
