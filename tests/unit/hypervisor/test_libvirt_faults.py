"""libvirt's one exception class, told apart by error code into the lunbridge error set."""

from __future__ import annotations

from typing import Any

import pytest

from lunbridge.errors import Busy, Conflict, InvalidArgument, NotFound, Unauthenticated, Unavailable
from lunbridge.hypervisor.libvirt._libvirt import LibvirtError, libvirt
from lunbridge.hypervisor.libvirt.faults import connection_lost, translate

URI = "qemu+ssh://root@kvm1/system"


def error(code_name: str, message: str) -> BaseException:
    exc: Any = LibvirtError(message)
    exc.err = (int(getattr(libvirt, code_name)), 0, message, 2, None, None, None, 0, 0)
    return exc  # type: ignore[no-any-return]


@pytest.mark.parametrize(
    ("code", "kind", "text"),
    [
        ("VIR_ERR_NO_DOMAIN", NotFound, "cannot attach: Domain not found"),
        ("VIR_ERR_SYSTEM_ERROR", Unavailable, f"libvirt {URI} cannot be reached"),
        ("VIR_ERR_AUTH_FAILED", Unauthenticated, "refused access"),
        ("VIR_ERR_OPERATION_TIMEOUT", Busy, "another job holds the domain"),
        ("VIR_ERR_XML_ERROR", InvalidArgument, "libvirt refused the request"),
        ("VIR_ERR_OPERATION_INVALID", Conflict, f"libvirt {URI} refused it"),
        ("VIR_ERR_INTERNAL_ERROR", Conflict, "Target not found"),
    ],
)
def test_codes(code: str, kind: type[Exception], text: str) -> None:
    translated = translate(error(code, "Domain not found / Target not found"), "attach", URI)
    assert isinstance(translated, kind)
    assert text in str(translated)


def test_lost_connections_are_recognised_and_bugs_stay_bugs() -> None:
    assert connection_lost(error("VIR_ERR_SYSTEM_ERROR", "End of file while reading data"))
    assert not connection_lost(error("VIR_ERR_NO_DOMAIN", "x"))
    assert translate(KeyError("bug"), "attach", URI) is None
    mine = NotFound("already ours")
    assert translate(mine, "attach", URI) is mine
