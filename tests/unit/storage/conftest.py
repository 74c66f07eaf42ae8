"""A tgt backend on a fake tgtd, with its pool and state file in the test's own folder."""

from __future__ import annotations

from collections.abc import AsyncIterator
from pathlib import Path

import pytest

from lunbridge.storage.tgt import TgtBackend, TgtConfig
from tests.unit.storage.fake_tgt import FakeTgtd

PREFIX = "iqn.2024-01.io.lunbridge.test:"


def make_config(tmp_path: Path) -> TgtConfig:
    return TgtConfig(
        control=7,
        portal="127.0.0.1:3260",
        pools={"default": tmp_path / "pool", "fast": tmp_path / "fast"},
        state_file=tmp_path / "state" / "tgt.json",
        iqn_prefix=PREFIX,
        timeout=2.0,
    )


@pytest.fixture
def fake() -> FakeTgtd:
    return FakeTgtd(control=7)


@pytest.fixture
async def backend(tmp_path: Path, fake: FakeTgtd) -> AsyncIterator[TgtBackend]:
    made = TgtBackend(make_config(tmp_path), runner=fake)
    yield made
    await made.close()
