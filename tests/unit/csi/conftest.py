"""The fake world the controller tests run in: the fakes wired together (tests/fakes `Lab`,
the fake operator running the real reconcile) and the controller service on them."""

from __future__ import annotations

import pytest

from lunbridge_csi.controller import ControllerService
from lunbridge_csi.volume_rules import Timeouts
from tests.fakes import Lab

TIMEOUTS = Timeouts(provision=1, attach=1, detach=1, delete=1, expand=1, poll=0.01)


@pytest.fixture
def lab() -> Lab:
    return Lab.build()


@pytest.fixture
def service(lab: Lab) -> ControllerService:
    return ControllerService(lab.kube, TIMEOUTS)
