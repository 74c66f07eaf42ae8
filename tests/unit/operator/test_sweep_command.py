"""`lunbridge-operator sweep` (issue 12, case 10): it prints the orphans one per line and exits
by what it found; `--remove` is refused while an operator replica is alive unless forced, then
detaches, unmaps and deletes exactly the orphans; the README documents the command."""

from __future__ import annotations

from pathlib import Path

import pytest

from lunbridge_operator import sweep
from lunbridge_operator.config import OperatorConfig
from lunbridge_operator.reconcile.services import Services
from tests.fakes import Lab


def _config(standalone: bool) -> OperatorConfig:
    return OperatorConfig(vsphere=None, libvirt=None, backends=[], standalone=standalone)


@pytest.fixture
def lab_services(monkeypatch: pytest.MonkeyPatch) -> Lab:
    lab = Lab.build()

    async def connect(_: OperatorConfig) -> Services:
        return lab.services

    monkeypatch.setattr("lunbridge_operator.handlers.lifecycle.connect", connect)
    return lab


class _Peers:
    def __init__(self) -> None:
        self.alive: list[str] = []

    async def live_peers(self, peering: str) -> dict[str, int]:
        return dict.fromkeys(self.alive, 1)


async def test_the_command_prints_orphans_and_exits_by_what_it_found(
    lab_services: Lab, capsys: pytest.CaptureFixture[str]
) -> None:
    lab = lab_services
    assert await sweep.run(_config(True), remove=False, include_unmapped=False, force=False) == 0
    assert capsys.readouterr().out == ""
    await lab.create_disk("gone", node_name="node-a")
    lun = lab.lun("gone")
    del lab.kube.disks["gone"]
    assert await sweep.run(_config(True), remove=False, include_unmapped=False, force=False) == 1
    out = capsys.readouterr()
    lines = [line.split("\t") for line in out.out.splitlines()]
    assert [(c[0], c[1], c[3]) for c in lines] == [
        ("lun", "backend/lab", lun.naa),
        ("map", "backend/lab", lun.naa),
        ("rdm", "vm/node-a-vm", lun.naa),
    ]
    assert "3 orphan(s)" in out.err


async def test_remove_is_refused_while_a_replica_is_alive_unless_forced(
    lab_services: Lab, capsys: pytest.CaptureFixture[str], monkeypatch: pytest.MonkeyPatch
) -> None:
    lab = lab_services
    await lab.create_disk("gone", node_name="node-a")
    lun = lab.lun("gone")
    del lab.kube.disks["gone"]
    peers = _Peers()
    peers.alive = ["operator-0"]
    monkeypatch.setattr(sweep, "SweepKube", lambda: peers)
    assert await sweep.run(_config(False), remove=True, include_unmapped=False, force=False) == 3
    assert "operator-0" in capsys.readouterr().err
    assert lun.name in lab.storage.luns

    lab_after = await sweep.run(_config(False), remove=True, include_unmapped=False, force=True)
    assert lab_after == 0
    out = capsys.readouterr().out.splitlines()
    assert [line.split(" ")[0] for line in out if "\t" not in line] == [
        "detached",
        "unmapped",
        "deleted",
        "rescanned",
        "rescanned",
    ]
    assert lun.name not in lab.storage.luns
    peers.alive = []  # no replica: no refusal (and nothing left to remove)
    assert await sweep.run(_config(False), remove=True, include_unmapped=False, force=False) == 0


def test_the_readme_names_the_command_the_metric_and_the_events() -> None:
    readme = (Path(__file__).parents[3] / "README.md").read_text()
    section = readme.split("#### Orphans", 1)[1].split("\n## ", 1)[0]
    for needle in ("lunbridge-operator sweep", "lunbridge_orphans", "OrphanLuns", "--include-unmapped",
                   "LUNBRIDGE_SWEEP_SECONDS", "virtualdisks.lunbridge.io"):  # fmt: skip
        assert needle in section


# --- the hypervisor layers' listings ------------------------------------------------------------
