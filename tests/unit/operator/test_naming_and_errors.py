"""Deterministic names, and the one table from domain errors to retry decisions."""

from __future__ import annotations

import kopf
import pytest

from lunbridge.errors import (
    AlreadyExists,
    Busy,
    Conflict,
    InvalidArgument,
    LimitExceeded,
    NotFound,
    Unavailable,
)
from lunbridge.hypervisor.base import Host, Scope
from lunbridge_operator.handlers.common import backoff, kopf_error, retry_delay, scale_retries
from lunbridge_operator.naming import igroup_name, lun_name


def test_lun_name_follows_the_uid() -> None:
    assert lun_name("0B9C1AA9-AC98-42CF-B677-30D36BAD3A58") == "vd-0b9c1aa9-ac98-42cf-b677-30d36bad3a58"


def test_igroup_names_are_dns_labels_and_stable() -> None:
    clustered = Host(name="esx-01.lab", id="host-10", cluster="Prod Cluster")
    # the names of a release are the names of the next: an igroup made before an upgrade is found
    assert igroup_name(clustered, Scope.HOST) == "host-esx-01-lab-4a5596e2"
    assert igroup_name(clustered, Scope.CLUSTER) == "cluster-prod-cluster-6f66fe24"
    # by the host's name, not its reference: a host re-added to vCenter keeps its igroup
    assert igroup_name(Host("esx-01.lab", "host-99", None), Scope.HOST) == "host-esx-01-lab-4a5596e2"
    standalone = Host(name="esx02", id="host-11", cluster=None)
    assert igroup_name(standalone, Scope.CLUSTER) == "host-esx02"
    long = Host(name="x" * 200, id="h", cluster=None)
    assert len(igroup_name(long, Scope.HOST)) <= 63
    # two names that sanitize alike still differ
    assert igroup_name(Host("a_b", "1", None), Scope.HOST) != igroup_name(Host("a.b", "2", None), Scope.HOST)


@pytest.mark.parametrize(
    ("error", "permanent"),
    [(Unavailable("x"), False), (Busy("x"), False), (NotFound("x"), False), (Conflict("x"), False),
     (LimitExceeded("x"), False), (InvalidArgument("x"), True), (AlreadyExists("x"), True)],
)  # fmt: skip
def test_errors_map_to_retry_or_give_up(error: Exception, permanent: bool) -> None:
    mapped = kopf_error(error, retry=0)  # type: ignore[arg-type]
    assert isinstance(mapped, kopf.PermanentError) is permanent
    assert str(error) in str(mapped)


def test_transient_faults_back_off_exponentially_and_cap() -> None:
    assert [backoff(10, r) for r in (0, 1, 2)] == [10, 20, 40]
    assert backoff(10, 50) == 300


def test_the_retry_scale_paces_every_retry() -> None:
    try:
        scale_retries(0.2)
        assert retry_delay(NotFound("x"), retry=3) == pytest.approx(6.0)  # a flat 30 s, scaled
        assert retry_delay(Unavailable("x"), retry=1) == pytest.approx(4.0)  # 10 s doubled, scaled
        assert retry_delay(Unavailable("x"), retry=50) == pytest.approx(60.0)  # the 5 min cap, scaled
        assert retry_delay(InvalidArgument("x"), retry=0) is None
        mapped = kopf_error(Conflict("x"), retry=0)
        assert isinstance(mapped, kopf.TemporaryError)
        assert mapped.delay == pytest.approx(6.0)
    finally:
        scale_retries(1.0)
    assert retry_delay(NotFound("x"), retry=3) == 30.0
