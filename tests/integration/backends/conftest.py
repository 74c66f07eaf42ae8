"""The backends the contract suite runs against, each as a `Subject`: the backend, the portals
its initiators use, and names of the test's own.

- `tgt`: the lab's tgtd, under an IQN prefix and pool folder of the test's own;
- `ontap`: the ontap backend against the lab's ONTAP REST simulator (tests/lab/ontap), whose
  data plane is the lab's tgtd under the simulator's own IQN prefix; or, when `ONTAP_URL` is set
  (`make contract-ontap`), against that real cluster: `ONTAP_SVM`, `ONTAP_USERNAME`,
  `ONTAP_PASSWORD`, and optionally `ONTAP_CA_FILE`, `ONTAP_TLS_VERIFY=false`, `ONTAP_AGGREGATE`.
  Its iSCSI data interfaces must be reachable from this machine.
"""

from __future__ import annotations

import contextlib
import os
import uuid
from collections.abc import AsyncIterator, Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import pytest

from lunbridge.errors import LunbridgeError
from lunbridge.storage import factory
from lunbridge.storage.base import StorageBackend
from lunbridge.storage.tgt import TgtBackend
from tests.integration.storage.conftest import config_for, remove_targets
from tests.lab import pool
from tests.lab.lab import LabState
from tests.lab.ontap import lab as ontap_lab

REAL_ONTAP = bool(os.environ.get("ONTAP_URL"))


@dataclass
class Subject:
    kind: str
    backend: StorageBackend
    portals: list[str]
    tag: str = field(default_factory=lambda: uuid.uuid4().hex[:6])
    made_luns: list[str] = field(default_factory=list)
    made_igroups: list[str] = field(default_factory=list)
    made_snapshots: list[str] = field(default_factory=list)

    def lun(self, base: str) -> str:
        name = f"{base}-{self.tag}"
        self.made_luns.append(name)
        return name

    def igroup(self, base: str) -> str:
        name = f"{base}-{self.tag}"
        self.made_igroups.append(name)
        return name

    def snapshot(self, base: str) -> str:
        name = f"{base}-{self.tag}"
        self.made_snapshots.append(name)
        return name

    def initiator(self, host: str) -> str:
        return f"iqn.1998-01.com.vmware:contract-{host}-{self.tag}"

    async def clean(self) -> None:
        """Remove what the test made (best effort: a failed test may leave odd states)."""
        b = self.backend
        for name in self.made_luns:
            for m in await _quiet(b.list_mappings(name)) or []:
                await _quiet(b.unmap_lun(m.lun, m.igroup))
        for name in reversed(self.made_luns):
            await _quiet(b.delete_lun(name))
        for name in self.made_snapshots:
            await _quiet(b.delete_snapshot(name))
        for name in self.made_luns:
            await _quiet(b.delete_lun(name))
        for name in self.made_igroups:
            await _quiet(b.delete_igroup(name))


async def _quiet(step: Any) -> Any:
    with contextlib.suppress(LunbridgeError):
        return await step
    return None


@pytest.fixture
def tag() -> str:
    """A suffix that makes a test's names its own."""
    return uuid.uuid4().hex[:6]


@pytest.fixture(scope="module")
def ontap_sim(
    request: pytest.FixtureRequest, tmp_path_factory: pytest.TempPathFactory
) -> Iterator[ontap_lab.OntapSim | None]:
    """The lab's ONTAP simulator for this module, its state on the lab's reflink pool; None
    against a real ONTAP (and then no lab is started)."""
    if REAL_ONTAP:
        yield None
        return
    lab: LabState = request.getfixturevalue("lab")
    folder = tmp_path_factory.mktemp("ontap-sim")
    state = pool.mount_point(Path(lab.lab_dir)) / f"ontap-{uuid.uuid4().hex[:8]}"
    state.mkdir()
    sim = ontap_lab.start(folder, lab.tgt, state_dir=state)
    yield sim
    ontap_lab.stop(folder, sim)


def ontap_section(
    sim: ontap_lab.OntapSim | None, folder: Path, password: str | None = None, **settings_given: Any
) -> factory.BackendConfig:
    """An ontap backend section for `sim` (None: the real ONTAP of ONTAP_URL), its Secret
    written under `folder`; `password` replaces the right one, `settings_given` change settings."""
    creds = folder / f"ontap-credentials-{uuid.uuid4().hex[:6]}"
    creds.mkdir()
    given_password = password
    if sim is None:
        env = os.environ
        settings: dict[str, Any] = {"managementUrl": env["ONTAP_URL"], "svm": env["ONTAP_SVM"],
                                    "flexvolPrefix": "lbct_"}  # fmt: skip
        if env.get("ONTAP_CA_FILE"):
            settings["caFile"] = env["ONTAP_CA_FILE"]
        if env.get("ONTAP_TLS_VERIFY"):
            settings["tlsVerify"] = env["ONTAP_TLS_VERIFY"]
        if env.get("ONTAP_AGGREGATE"):
            settings["aggregates"] = [env["ONTAP_AGGREGATE"]]
        user, password = env["ONTAP_USERNAME"], env["ONTAP_PASSWORD"]
    else:
        settings = {"managementUrl": sim.url, "svm": sim.svm, "caFile": str(sim.ca_file),
                    "dataInterfaces": [sim.portal]}  # fmt: skip
        user, password = sim.username, sim.password
    (creds / "username").write_text(user + "\n")
    (creds / "password").write_text((password if given_password is None else given_password) + "\n")
    settings = {k: v for k, v in {**settings, **settings_given}.items() if v is not None}
    return factory.BackendConfig("contract-ontap", "ontap", settings, credentials_dir=creds)


@pytest.fixture(params=["tgt", "ontap"])
async def subject(
    request: pytest.FixtureRequest, tmp_path: Path, ontap_sim: ontap_lab.OntapSim | None
) -> AsyncIterator[Subject]:
    if request.param == "tgt":
        if REAL_ONTAP:
            pytest.fail("ONTAP_URL is set: run only the ontap contract (make contract-ontap)")
        lab: LabState = request.getfixturevalue("lab")
        folder = pool.mount_point(Path(lab.lab_dir)) / f"ct-{uuid.uuid4().hex[:10]}"
        folder.mkdir()
        (tmp_path / "pool").symlink_to(folder)
        prefix = f"iqn.2024-01.io.lunbridge.ct{uuid.uuid4().hex[:8]}:"
        tgt_backend = TgtBackend(config_for(lab.tgt, tmp_path, prefix))
        made = Subject("tgt", tgt_backend, [lab.tgt.portal])
        yield made
        await made.clean()
        await tgt_backend.close()
        remove_targets(lab.tgt, prefix)
        return
    backend = factory.build(ontap_section(ontap_sim, tmp_path))
    portals = [p.address for p in await backend.portals()]
    made = Subject("ontap", backend, portals)
    yield made
    await made.clean()
    await backend.close()
