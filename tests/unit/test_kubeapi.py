"""Kubernetes API failures become the domain errors the operator and the CSI plugin act on."""

from __future__ import annotations

import pytest
import urllib3
from kubernetes.client.exceptions import ApiException

from lunbridge.errors import AlreadyExists, InvalidArgument, NotFound, Unauthenticated, Unavailable
from lunbridge.kubeapi import translate


@pytest.mark.parametrize(
    ("status", "kind"),
    [(404, NotFound), (409, AlreadyExists), (422, InvalidArgument), (400, InvalidArgument),
     (403, Unauthenticated), (401, Unauthenticated), (500, Unavailable), (429, Unavailable)],
)  # fmt: skip
def test_api_statuses(status: int, kind: type[Exception]) -> None:
    error = translate("read Node n1", ApiException(status=status, reason="why"))
    assert isinstance(error, kind)
    assert str(error).startswith("read Node n1: ")


def test_unreachable_api_is_unavailable() -> None:
    error = translate("list Nodes", urllib3.exceptions.MaxRetryError(None, "/api", "refused"))  # type: ignore[arg-type]
    assert isinstance(error, Unavailable)
    assert "cannot be reached" in str(error)
