"""The ONTAP REST simulator (tests/lab/ontap) on the lab's tgtd, its state on the lab's reflink
pool, and netapp-ontap's own client pointed at it; every test's simulator log is checked for
`SIMULATOR BUG` (an answer its schema does not allow) at the end."""

from __future__ import annotations

import shutil
import uuid
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
from netapp_ontap.host_connection import HostConnection

from tests.lab import pool, procs
from tests.lab.lab import LabState
from tests.lab.ontap import lab as ontap_lab
from tests.lab.ontap.lab import OntapSim
from tests.lab.tgt import Tgt

PAGE_SIZE = 2


@pytest.fixture
def sim_pool(lab: LabState) -> Iterator[Path]:
    """A folder of this test's own on the lab's XFS reflink pool; removed after the test."""
    folder = pool.mount_point(Path(lab.lab_dir)) / f"ontapsim-{uuid.uuid4().hex[:12]}"
    folder.mkdir()
    yield folder
    shutil.rmtree(folder, ignore_errors=True)


def assert_no_bug(folder: Path, sim: OntapSim) -> None:
    log = procs.log_file(folder, sim.name).read_text(errors="replace")
    assert "SIMULATOR BUG" not in log, log[-4000:]
    assert sim.password not in log


@pytest.fixture
def ontap(tmp_path: Path, tgt: Tgt, sim_pool: Path) -> Iterator[OntapSim]:
    """A simulator on the lab's tgtd (its own IQN prefix), pages of 2 records, short jobs."""
    folder = tmp_path / "ontap"
    sim = ontap_lab.start(folder, tgt, state_dir=sim_pool / "state", page_size=PAGE_SIZE, job_delay=0.05)
    yield sim
    ontap_lab.stop(folder, sim)
    assert_no_bug(folder, sim)


def connect(sim: OntapSim, monkeypatch: pytest.MonkeyPatch) -> HostConnection:
    """netapp-ontap's connection, trusting the lab CA. requests lets REQUESTS_CA_BUNDLE (set on
    this machine) override a session's `verify`, so the variables go for the test."""
    monkeypatch.delenv("REQUESTS_CA_BUNDLE", raising=False)
    monkeypatch.delenv("CURL_CA_BUNDLE", raising=False)
    ca_file: Any = str(sim.ca_file)  # requests takes a CA file where netapp-ontap types a bool
    return HostConnection(
        "127.0.0.1",
        port=sim.port,
        username=sim.username,
        password=sim.password,
        verify=ca_file,
        poll_interval=1,
        poll_timeout=30,
    )


@pytest.fixture
def conn(ontap: OntapSim, monkeypatch: pytest.MonkeyPatch) -> HostConnection:
    return connect(ontap, monkeypatch)


def error_of(exc: BaseException) -> tuple[int, dict[str, str]]:
    """(HTTP status, ONTAP error object) of a NetAppRestError raised for an HTTP error."""
    response = getattr(exc, "http_err_response", None)
    assert response is not None, f"no HTTP error response in {exc!r}"
    return response.http_response.status_code, response.http_response.json()["error"]
