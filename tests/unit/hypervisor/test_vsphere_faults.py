"""pyvmomi's faults and socket/TLS errors become the lunbridge error set, with messages that
name the URL and user and never the password."""

from __future__ import annotations

import http.client
from typing import Any

import pytest
import pyVmomi

from lunbridge.errors import Busy, Conflict, NotFound, Unauthenticated, Unavailable
from lunbridge.hypervisor.vsphere.faults import translate
from lunbridge.hypervisor.vsphere.tls import ThumbprintMismatch

vim: Any = pyVmomi.vim
vmodl: Any = pyVmomi.vmodl
URL = "https://vc.example.com:443/sdk"
USER = "svc@vsphere.local"


def test_invalid_login_names_url_and_user() -> None:
    error = translate(vim.fault.InvalidLogin(msg="Login failure"), "log in", URL, USER)
    assert isinstance(error, Unauthenticated)
    assert URL in str(error)
    assert USER in str(error)


def test_thumbprint_mismatch_is_unauthenticated_and_shows_both_digests() -> None:
    error = translate(ThumbprintMismatch("a" * 64, "b" * 64), "log in", URL, USER)
    assert isinstance(error, Unauthenticated)
    assert "a" * 64 in str(error)
    assert "b" * 64 in str(error)
    assert str(error).startswith("TLS:")


@pytest.mark.parametrize(
    ("exc", "kind"),
    [
        (ConnectionRefusedError(111, "Connection refused"), Unavailable),
        (TimeoutError("timed out"), Unavailable),
        (http.client.RemoteDisconnected("closed"), Unavailable),
        (Exception("127.0.0.1:1 is down or is not a VIM server"), Unavailable),
        (vmodl.fault.ManagedObjectNotFound(msg="gone"), NotFound),
        (vim.fault.TaskInProgress(msg="busy"), Busy),
        (vim.fault.NoPermission(privilegeId="VirtualMachine.Config.RawDevice"), Unauthenticated),
        (vim.fault.InvalidDeviceBacking(msg="not visible"), Conflict),
    ],
)
def test_kinds(exc: BaseException, kind: type[Exception]) -> None:
    error = translate(exc, "attach naa.x to VM y", URL, USER)
    assert isinstance(error, kind)
    assert "attach naa.x to VM y" in str(error) or kind is Unauthenticated


def test_our_own_bugs_are_not_translated() -> None:
    assert translate(KeyError("x"), "x", URL, USER) is None
