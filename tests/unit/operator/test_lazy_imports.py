"""What the operator loads only when its configuration asks for it: NetApp's library (about
25 MiB) without an ontap backend, the libvirt binding (about 10 MiB) without KVM hosts
(issue 18, P4: the operator's memory)."""

from __future__ import annotations

import subprocess
import sys

LOADED = """
import sys
import lunbridge_operator.config, lunbridge_operator.handlers  # everything a vSphere operator imports
print(" ".join(sorted(m for m in ("libvirt", "netapp_ontap") if m in sys.modules)))
"""


def test_an_operator_without_kvm_hosts_or_ontap_backends_loads_neither_library() -> None:
    found = subprocess.run(
        [sys.executable, "-c", LOADED], capture_output=True, text=True, timeout=120, check=True
    )
    assert found.stdout.split() == []


def test_the_libvirt_client_is_there_when_asked_for() -> None:
    from lunbridge.hypervisor import libvirt
    from lunbridge.hypervisor.libvirt.client import Libvirt

    assert libvirt.Libvirt is Libvirt
