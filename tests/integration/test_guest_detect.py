"""Guest detection inside the lab's real guest: the kernel's DMI says QEMU, and the BIOS UUID
read from it is the one the hypervisor gave the VM."""

from __future__ import annotations

import json
import sys

from tests.lab import guest as guest_module
from tests.lab.guest import Guest
from tests.lab.paths import REPO_DIR

PROBE = (
    "import json; from lunbridge.hypervisor.detect import detect; i = detect(); "
    "print(json.dumps({'platform': i.platform.value, 'uuid': i.bios_uuid, 'provider': i.provider_id}))"
)


def test_detects_qemu_and_reads_the_vm_uuid(guest: Guest) -> None:
    result = guest.run([sys.executable, "-c", PROBE], timeout=120, env={"PYTHONPATH": str(REPO_DIR)})
    assert result.returncode == 0, result.stderr
    found = json.loads(result.stdout)
    expected = guest_module.vm_uuid(guest.lab_dir)
    assert found == {"platform": "kvm", "uuid": expected, "provider": f"libvirt://{expected}"}
