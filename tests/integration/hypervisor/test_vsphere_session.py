"""The vCenter session: a wrong password is Unauthenticated and never shown; an expired
session is renewed once, transparently; a vCenter that is down is Unavailable; TLS is
verified by default, pinned by SHA-256 thumbprint on request, and a wrong pin is a TLS error
(Unauthenticated: fixing the Secret is the cure, retrying is not)."""

from __future__ import annotations

import asyncio
import hashlib
import logging
import ssl
import time
from typing import Any
from urllib.parse import urlsplit

import pytest
import pyVim.connect

from lunbridge.errors import Unauthenticated, Unavailable
from lunbridge.hypervisor.vsphere import VSphere, VSphereConfig
from tests.integration.hypervisor.vcenter import SpareVcsim, server_pem
from tests.lab import procs
from tests.lab import vcsim as vcsim_lab
from tests.lab.lab import LabState

SmartConnect: Any = pyVim.connect.SmartConnect


def connect_insecurely(spare: SpareVcsim) -> Any:
    parts = urlsplit(spare.inventory.url)
    return SmartConnect(
        host=parts.hostname,
        port=parts.port,
        user=spare.username,
        pwd=spare.password,
        sslContext=ssl._create_unverified_context(),
    )


def pin_of(url: str) -> str:
    return hashlib.sha256(ssl.PEM_cert_to_DER_cert(server_pem(url))).hexdigest()


async def test_wrong_password_is_unauthenticated_and_never_shown(
    lab: LabState, lab_ca: str, caplog: pytest.LogCaptureFixture
) -> None:
    caplog.set_level(logging.DEBUG)
    wrong = lab.vsphere_password + "-wrong"
    config = VSphereConfig(url=lab.vsphere_url, username=lab.vsphere_user, password=wrong, ca_bundle=lab_ca)
    with pytest.raises(Unauthenticated) as caught:
        await VSphere.connect(config)
    message = str(caught.value)
    assert lab.vsphere_url in message
    assert lab.vsphere_user in message
    assert "wrong user name or password" in message
    for text in (message, repr(caught.value), repr(config), repr(VSphere(config)), caplog.text):
        assert wrong not in text
        assert lab.vsphere_password not in text


async def test_right_password_logs_in_and_shows_nothing_either(
    lab: LabState, config: VSphereConfig, vcsim: vcsim_lab.VcsimPeer, caplog: pytest.LogCaptureFixture
) -> None:
    caplog.set_level(logging.DEBUG)
    async with await VSphere.connect(config) as client:
        assert (await client.find_vm(vcsim.inventory.vms[0].name)).name == vcsim.inventory.vms[0].name
        assert lab.vsphere_password not in repr(client)
    assert f"logged in to vCenter {lab.vsphere_url} as {lab.vsphere_user}" in caplog.text
    assert lab.vsphere_password not in caplog.text


def session_keys(observer: Any) -> set[str]:
    return {s.key for s in observer.content.sessionManager.sessionList}


async def test_expired_session_is_renewed_once_transparently(idle_vcsim: SpareVcsim) -> None:
    info = idle_vcsim.inventory.vms[0]
    # a second session watches the simulator drop ours (it stays alive by polling)
    observer = await asyncio.to_thread(connect_insecurely, idle_vcsim)
    before = await asyncio.to_thread(session_keys, observer)
    # without the inventory mirror, whose long poll would keep the session busy (never idle)
    async with await VSphere.connect(idle_vcsim.config(), mirror=False) as client:
        assert (await client.find_vm(info.name)).id == info.moref
        assert client.session.logins == 1
        ours = await asyncio.to_thread(session_keys, observer) - before
        assert len(ours) == 1
        deadline = time.monotonic() + 30  # idle timeout 2 s, checked every 2 s
        while ours & await asyncio.to_thread(session_keys, observer):
            assert time.monotonic() < deadline, "the simulator never dropped the idle session"
            await asyncio.sleep(0.5)
        # several calls at once: all succeed, with one single re-login between them
        found = await asyncio.gather(
            *(client.find_vm(f"vsphere://{vm.bios_uuid}") for vm in idle_vcsim.inventory.vms)
        )
        assert [vm.id for vm in found] == [vm.moref for vm in idle_vcsim.inventory.vms]
        assert client.session.logins == 2


async def test_vcenter_that_stopped_is_unavailable(doomed_vcsim: SpareVcsim) -> None:
    info = doomed_vcsim.inventory.vms[0]
    async with await VSphere.connect(doomed_vcsim.config()) as client:
        assert (await client.find_vm(info.name)).name == info.name
        vcsim_lab.stop(doomed_vcsim.lab_dir)
        with pytest.raises(Unavailable, match=rf"vCenter {doomed_vcsim.inventory.url} cannot be reached"):
            await client.find_vm(info.name)


async def test_nothing_listening_is_unavailable(vcsim: vcsim_lab.VcsimPeer) -> None:
    url = f"https://127.0.0.1:{procs.free_port()}/sdk"
    config = VSphereConfig(url=url, username=vcsim.username, password=vcsim.password, insecure=True)
    started = time.monotonic()
    with pytest.raises(Unavailable, match=rf"vCenter {url} cannot be reached .*refused"):
        await VSphere.connect(config)
    assert time.monotonic() - started < 5


async def test_default_tls_verification_refuses_an_unknown_certificate(lab: LabState) -> None:
    config = VSphereConfig(url=lab.vsphere_url, username=lab.vsphere_user, password=lab.vsphere_password)
    with pytest.raises(Unauthenticated, match=r"^TLS: the certificate of vCenter .* could not be verified"):
        await VSphere.connect(config)


async def test_pinned_thumbprint_logs_in_and_a_wrong_one_is_a_tls_error(
    lab: LabState, vcsim: vcsim_lab.VcsimPeer
) -> None:
    pin = pin_of(lab.vsphere_url)
    colons = ":".join(pin[i : i + 2] for i in range(0, 64, 2)).upper()
    good = VSphereConfig(
        url=lab.vsphere_url, username=lab.vsphere_user, password=lab.vsphere_password, thumbprint=colons
    )
    async with await VSphere.connect(good) as client:
        # every new connection is checked again, not only the first one
        found = await asyncio.gather(*(client.find_vm(vm.name) for vm in vcsim.inventory.vms))
        assert [vm.id for vm in found] == [vm.moref for vm in vcsim.inventory.vms]
    wrong = "ab" * 32
    bad = VSphereConfig(
        url=lab.vsphere_url, username=lab.vsphere_user, password=lab.vsphere_password, thumbprint=wrong
    )
    with pytest.raises(Unauthenticated) as caught:
        await VSphere.connect(bad)
    message = str(caught.value)
    assert message.startswith(
        f"TLS: vCenter {lab.vsphere_url} presented a certificate with SHA-256 thumbprint {pin}"
    )
    assert f"but the Secret pins {wrong}" in message


async def test_insecure_is_an_explicit_switch(lab: LabState, caplog: pytest.LogCaptureFixture) -> None:
    config = VSphereConfig(
        url=lab.vsphere_url, username=lab.vsphere_user, password=lab.vsphere_password, insecure=True
    )
    async with await VSphere.connect(config) as client:
        assert client.session.logins == 1
    assert "TLS verification of vCenter" in caplog.text
