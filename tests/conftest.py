"""How `make test` shares the suite between its two pytest-xdist workers (`-n 2`): in two fixed
lanes of whole packages or modules, each in collection order, so that what runs before what in
each worker's lab is the same in every run (a package that leaves something in the shared lab
meets the same next package each time, not whichever the scheduler happened to pick). Each
worker starts its own session lab when its first test needs one: labs run side by side (own
folder, ports, tgtd control socket, libvirtd). Without xdist (plain `pytest`, `-n 0`) the
hook is not called and everything runs in one process, in collection order.

The lanes are xdist's scope scheduling with a scope per lane, given by the
`pytest_xdist_make_scheduler` hook: not `--dist loadgroup` with `xdist_group` marks, which
loses its groups on pytest 9.2 (it renames node ids, which pytest 9.2 no longer lets it do:
pytest-xdist issue 1386).

A test that records a `STEP_TIMINGS` user property (how long each step took) gets it printed
in the run's summary, from whichever worker ran it."""

from __future__ import annotations

from typing import Any

import pytest
from xdist.scheduler import LoadScopeScheduling

# The lane of each package or module, by path under tests/ (the longest match wins; `b` when
# none does): lane a the end-to-end install on real kubelets (a lab of its own, ~6 min) and the
# operator's real-peer tests but verification's, lane b everything else. Measured with `-n 2`
# (a fresh clone, TCG guests), pytest took 16.7-25.8 min on one machine on 2026-12-02, by how
# fast its guests ran (README "Tests"). Move a module when one lane ends far ahead of the other
# (`--durations=0` gives every test's time).
LANES = {
    "integration/installed": "a",
    "integration/operator": "a",
    "integration/operator/test_verify.py": "b",
    "integration/ontap_chain": "a",
}

STEP_TIMINGS = "step timings"


def lane_of(nodeid: str) -> str:
    """The lane in `LANES` of a test by its node id (`tests/integration/operator/x.py::test`)."""
    path = nodeid.split("::", 1)[0].removeprefix("tests/")
    matches = [key for key in LANES if path == key or path.startswith(f"{key}/")]
    return LANES[max(matches, key=len)] if matches else "b"


class LaneScheduling(LoadScopeScheduling):  # type: ignore[misc]  # xdist has no type marker
    """xdist's scope scheduling with one scope per lane: each worker takes one lane whole."""

    def _split_scope(self, nodeid: str) -> str:
        return f"lane-{lane_of(nodeid)}"


def pytest_xdist_make_scheduler(config: pytest.Config, log: Any) -> LaneScheduling:
    return LaneScheduling(config, log)


def pytest_terminal_summary(terminalreporter: pytest.TerminalReporter) -> None:
    for reports in terminalreporter.stats.values():
        for report in reports:
            for name, value in getattr(report, "user_properties", ()):
                if name == STEP_TIMINGS and report.when == "teardown":
                    terminalreporter.write_sep("-", f"{STEP_TIMINGS}: {report.nodeid}")
                    terminalreporter.write_line(str(value))
