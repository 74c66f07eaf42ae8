"""The schema gate: requests that netapp-ontap 9.19.1.0's schemas do not allow are refused as
ONTAP refuses them, naming the field."""

from __future__ import annotations

import pytest

from tests.lab.ontap.lab import OntapSim, request

pytestmark = pytest.mark.peers


def _error(sim: OntapSim, method: str, path: str, body: object = None) -> tuple[int, str, str]:
    status, answer = request(sim, method, path, body)
    error = answer["error"]
    assert isinstance(error, dict)
    return status, error["code"], error.get("target", "")


def test_requests_outside_the_schema_are_refused(ontap: OntapSim) -> None:
    vol = {"name": "lb_gate", "svm": {"name": ontap.svm}, "aggregates": [{"name": "aggr1"}], "size": 1 << 30}
    assert request(ontap, "POST", "/api/storage/volumes?return_timeout=10", vol)[0] == 201
    lun = {
        "name": "/vol/lb_gate/l1",
        "svm": {"name": ontap.svm},
        "os_type": "linux",
        "space": {"size": 1 << 24},
    }

    assert _error(ontap, "POST", "/api/storage/luns", {**lun, "bogus": 1}) == (400, "262179", "bogus")
    igroup = {"name": "gate", "svm": {"name": ontap.svm}, "protocol": "iscsi", "os_type": "linux"}
    assert _error(ontap, "POST", "/api/protocols/san/igroups?return_timeout=10", igroup) == (
        400, "262179", "return_timeout",
    )  # fmt: skip  # igroup calls never run as jobs: ONTAP takes no return_timeout there
    nested = {**lun, "space": {"size": 1 << 24, "bogus": True}}
    assert _error(ontap, "POST", "/api/storage/luns", nested) == (400, "262179", "space.bogus")
    assert _error(ontap, "POST", "/api/storage/luns", {**lun, "os_type": "bogus"}) == (
        400,
        "262197",
        "os_type",
    )
    assert _error(ontap, "POST", "/api/storage/luns", {**lun, "serial_number": "x" * 12}) == (
        400,
        "262196",
        "serial_number",
    )
    assert _error(ontap, "POST", "/api/storage/luns", {**lun, "comment": "x" * 255}) == (
        400,
        "262197",
        "comment",
    )
    assert _error(ontap, "POST", "/api/storage/luns", {**lun, "space": {"size": "big"}}) == (
        400,
        "262197",
        "space.size",
    )
    assert _error(ontap, "GET", "/api/storage/luns?fields=bogus") == (400, "262197", "fields")
    assert _error(ontap, "GET", "/api/storage/luns?bogus=1") == (400, "262179", "bogus")
    assert _error(ontap, "POST", "/api/storage/volumes", {**vol, "name": "lb-dash"}) == (
        400,
        "917888",
        "name",
    )
    assert _error(ontap, "POST", "/api/svm/svms", {}) == (405, "3", "")
    # dotted names in a body are the same fields, and pass
    dotted = {"name": "/vol/lb_gate/l2", "svm.name": ontap.svm, "os_type": "linux", "space.size": 1 << 24}
    assert request(ontap, "POST", "/api/storage/luns", dotted)[0] == 201
    assert _error(ontap, "POST", "/api/storage/luns", {**lun, "svm": {"name": "other"}}) == (
        400,
        "2621462",
        "svm.name",
    )
