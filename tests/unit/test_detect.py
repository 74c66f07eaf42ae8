"""Guest detection over fixture trees: which hypervisor, which VM, or which local HBAs."""

from __future__ import annotations

from pathlib import Path

import pytest

from lunbridge.hypervisor.detect import Platform, detect


def tree(root: Path, files: dict[str, str]) -> Path:
    for relative, text in files.items():
        path = root / relative
        path.parent.mkdir(parents=True, exist_ok=True)
        path.write_text(text + "\n")
    return root


def dmi(**fields: str) -> dict[str, str]:
    return {f"sys/class/dmi/id/{name}": value for name, value in fields.items()}


BARE_CPU = {"proc/cpuinfo": "processor\t: 0\nflags\t\t: fpu vme de pse sse2 ht"}


def test_vmware_guest_uses_serial_byte_order(tmp_path: Path) -> None:
    root = tree(
        tmp_path,
        dmi(
            sys_vendor="VMware, Inc.",
            product_name="VMware Virtual Platform",
            # older virtual hardware: the first three fields of product_uuid are byte-swapped
            product_uuid="2b1a7c56-2c5e-4a3f-8f11-223344556677",
            product_serial="VMware-56 7c 1a 2b 5e 2c 3f 4a-8f 11 22 33 44 55 66 77",
        ),
    )
    found = detect(root)
    assert found.platform is Platform.VMWARE
    assert found.bios_uuid == "567c1a2b-5e2c-3f4a-8f11-223344556677"
    assert found.provider_id == "vsphere://567c1a2b-5e2c-3f4a-8f11-223344556677"


def test_vmware_guest_without_serial_falls_back_to_product_uuid(tmp_path: Path) -> None:
    root = tree(tmp_path, dmi(sys_vendor="VMware, Inc.", product_name="VMware7,1",
                              product_uuid="4221A5B1-0C5D-4E3F-9A11-AABBCCDDEEFF"))  # fmt: skip
    assert detect(root).provider_id == "vsphere://4221a5b1-0c5d-4e3f-9a11-aabbccddeeff"


def test_qemu_guest_is_kvm_with_libvirt_provider_id(tmp_path: Path) -> None:
    root = tree(tmp_path, dmi(sys_vendor="QEMU", product_name="Standard PC (i440FX + PIIX, 1996)",
                              product_uuid="8f2c1d44-5b6a-4c3e-9d2f-0123456789ab"))  # fmt: skip
    found = detect(root)
    assert found.platform is Platform.KVM
    assert found.virtual
    assert found.provider_id == "libvirt://8f2c1d44-5b6a-4c3e-9d2f-0123456789ab"


def test_nil_uuid_is_no_identity(tmp_path: Path) -> None:
    root = tree(tmp_path, dmi(sys_vendor="QEMU", product_uuid="00000000-0000-0000-0000-000000000000"))
    found = detect(root)
    assert found.bios_uuid is None
    assert found.provider_id is None


@pytest.mark.parametrize(
    ("files", "expected"),
    [
        (dmi(sys_vendor="Microsoft Corporation", product_name="Virtual Machine"), Platform.HYPERV),
        (dmi(sys_vendor="innotek GmbH", product_name="VirtualBox"), Platform.VIRTUALBOX),
        (dmi(sys_vendor="Red Hat", product_name="KVM"), Platform.KVM),
        ({"sys/hypervisor/type": "xen"}, Platform.XEN),
        ({"proc/cpuinfo": "flags\t\t: fpu sse2 hypervisor"}, Platform.OTHER_VIRTUAL),
        ({**dmi(sys_vendor="Dell Inc.", product_name="PowerEdge R650"), **BARE_CPU}, Platform.BARE_METAL),
    ],
)
def test_platforms(tmp_path: Path, files: dict[str, str], expected: Platform) -> None:
    assert detect(tree(tmp_path, files)).platform is expected


def test_unreadable_tree_is_bare_metal_without_identity(tmp_path: Path) -> None:
    found = detect(tmp_path)
    assert found.platform is Platform.BARE_METAL
    assert found.provider_id is None
