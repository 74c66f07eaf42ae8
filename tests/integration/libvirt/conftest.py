"""Fixtures for the libvirt layer against the lab's real KVM host: its libvirtd, the guest it
booted (commands run in it through the lab agent), and the lab's tgtd driven by the tgt
backend under a prefix of the test's own, so tests never see each other's targets.

Every LUN a test makes is unmapped and deleted after it, and every test detaches what it
attached, so the guest is left as the lab made it (a controller a test added stays: later
tests use the lowest free address, which is on controller 0).
"""

from __future__ import annotations

import uuid
from collections.abc import AsyncIterator, Awaitable, Callable
from pathlib import Path

import pytest

from lunbridge.hypervisor.libvirt import Libvirt, LibvirtConfig
from lunbridge.san import Transport
from lunbridge.storage.base import Lun
from lunbridge.storage.tgt import TgtBackend, TgtConfig
from tests.lab import tgt as tgt_lab

MiB = 1 << 20
MakeLun = Callable[[list[str]], Awaitable[Lun]]


@pytest.fixture
async def kvm(kvm_config: LibvirtConfig) -> AsyncIterator[Libvirt]:
    client = await Libvirt.connect(kvm_config)
    yield client
    await client.close()


@pytest.fixture
def prefix() -> str:
    return f"iqn.2024-01.io.lunbridge.kvm{uuid.uuid4().hex[:8]}:"


@pytest.fixture
async def backend(tgt: tgt_lab.Tgt, tmp_path: Path, prefix: str) -> AsyncIterator[TgtBackend]:
    made = TgtBackend(
        TgtConfig(
            control=tgt.control,
            portal=tgt.portal,
            pools={"default": tmp_path / "pool"},
            state_file=tmp_path / "tgt.json",
            iqn_prefix=prefix,
        )
    )
    yield made
    for mapping in await made.list_mappings():
        await made.unmap_lun(mapping.lun, mapping.igroup)
    for igroup in await made.list_igroups():
        await made.delete_igroup(igroup.name)
    for lun in await made.list_luns():
        await made.delete_lun(lun.name)
    await made.close()


@pytest.fixture
def masked_lun(backend: TgtBackend) -> MakeLun:
    """`await masked_lun([iqn, ...])`: a 32 MiB LUN mapped to an igroup of exactly those IQNs."""

    async def make(initiators: list[str]) -> Lun:
        igroup = await backend.create_igroup(f"host-{uuid.uuid4().hex[:6]}", Transport.ISCSI, initiators)
        lun = await backend.create_lun(f"vd-{uuid.uuid4().hex[:8]}", 32 * MiB)
        await backend.map_lun(lun.name, igroup.name)
        return lun

    return make
