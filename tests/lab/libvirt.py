"""The lab's KVM host: its own libvirtd, and one guest booted through it.

The libvirt layer drives a real libvirtd (Debian's, QEMU driver), which hot-plugs LUNs into a
real guest over QEMU's own iSCSI initiator. libvirtd in system mode keeps its state in fixed
places (/etc/libvirt, /run/libvirt, /var/lib/libvirt, /var/log/libvirt, /var/cache/libvirt)
and locks them, so two of them cannot run side by side, nor could the lab's clash with a
system libvirtd. So the lab's runs in a private mount namespace (`unshare --mount`) where
those folders are bind mounts of folders under `<lab_dir>/libvirt/`: every lab (and every
test session) has its own daemon, its own configuration and its own domains. Its sockets
are in a lab folder too, so the URI is `qemu:///system?socket=<lab>/libvirt-sock`. Only the
QEMU capabilities cache (what libvirtd learns by probing QEMU, ~8 s) is shared, in the
peer cache, so only the very first start pays for it.

What Debian's libvirtd needs here (see ../shared/notes/peers.md): the `libvirt-qemu` user
must exist (its compiled-in QEMU user is resolved before qemu.conf is read;
hack/peers/install-debian.sh creates it); the lab's qemu.conf runs QEMU as root without a
security driver, cgroups or per-domain namespaces, and sends QEMU's output to files, so
virtlogd is not needed. libvirtd logs harmless errors about D-Bus, dnsmasq and dmidecode.

The guest is the same kernel and initramfs as the direct-QEMU guest (hack/peers/build-guest.sh):
a `<domain type='qemu'>` (TCG: this machine's /dev/kvm cannot boot a stock kernel) with direct
kernel boot, this machine's / shared read-only over 9p (mount tag `hostroot`, cached in the
guest: host files that change while it runs may look stale there, except the checkout, which
comes uncached from a share of its own, tag `labrepo`), a virtio-scsi
controller whose hot-plug notifications are off (the guest sees a LUN only after a targeted
rescan, as on a vSphere PVSCSI controller), and the command agent's virtio-serial channel.
For the CSI node service it also has a user-mode NIC (QEMU's slirp with `restrict=on`: the
guest reaches nothing, and one loopback port of this machine is forwarded to the guest's
GUEST_CSI_PORT) and a second, writable 9p share mounted at the same path in the guest
(`csi_share_dir`), so a CO on this machine (csi-sanity) and the guest see the same staging
and target folders. libvirt has no port forwards for slirp, so the NIC is passed to QEMU
as arguments, at a PCI slot libvirt does not hand out first.
Its SMBIOS UUID is the domain UUID, so the Node's providerID `libvirt://<uuid>` is what the
guest's DMI shows.
"""

from __future__ import annotations

import contextlib
import os
import pwd
import shlex
import signal
import subprocess
import time
import uuid
import xml.etree.ElementTree as ET
from dataclasses import dataclass
from pathlib import Path

from tests.lab import guest as guest_lab
from tests.lab import paths, procs
from tests.lab.guest import Agent, AgentGuest
from tests.lab.kube import GUEST_APISERVER
from tests.lab.procs import LabError
from tests.lab.tgt import GUEST_TGT_PORTAL

NAME = "libvirtd"
DOMAIN = "lunbridge-lab-guest"
NODE_NAME = "lab-guest"
HOST_IQN = "iqn.2024-01.io.lunbridge.lab:kvm-host"
QEMU_USER = "libvirt-qemu"
START_TIMEOUT = 60.0  # a cold start probes QEMU's capabilities first (~8 s here)
BOOT_TIMEOUT = 180.0
AGENT_SOCKET = "libvirt-guest-agent.sock"
# libvirtd's fixed system folders → the lab's own copies (under <lab_dir>/libvirt/)
SYSTEM_DIRS = {
    "etc": "/etc/libvirt",
    "run": "/run/libvirt",
    "lib": "/var/lib/libvirt",
    "log": "/var/log/libvirt",
}
CACHE_DIR = "/var/cache/libvirt"
QEMU_NS = "http://libvirt.org/schemas/domain/qemu/1.0"
GUEST_ADDRESS = "10.0.2.15/24"  # slirp's first guest address, where its port forwards lead
GUEST_CSI_PORT = 10000  # the node service's TCP port inside the guest
CSI_SHARE_TAG = "labcsi"
NIC_PCI_SLOT = "0x1e"

LIBVIRTD_CONF = """\
# the lab's libvirtd: unix sockets in the lab folder, root only, no network listeners
unix_sock_dir = "{sock_dir}"
unix_sock_group = "root"
unix_sock_ro_perms = "0700"
unix_sock_rw_perms = "0700"
unix_sock_admin_perms = "0700"
auth_unix_ro = "none"
auth_unix_rw = "none"
log_outputs = "3:file:{log}"
"""

QEMU_CONF = """\
# the lab's QEMU driver: guests run as root (they read / over 9p), no labels, no cgroups,
# no per-guest /dev, QEMU's output to files (no virtlogd), and no seccomp sandbox: its
# spawn=deny kills QEMU when the NIC's guestfwd starts its relay to the API server
user = "root"
group = "root"
dynamic_ownership = 0
remember_owner = 0
security_driver = "none"
cgroup_controllers = [ ]
namespaces = [ ]
stdio_handler = "file"
seccomp_sandbox = 0
"""


def root(lab_dir: Path) -> Path:
    return lab_dir / "libvirt"


def socket_path(lab_dir: Path) -> Path:
    """libvirtd's read-write socket (in a short folder: unix socket paths are limited)."""
    return guest_lab.socket_dir(lab_dir) / "libvirt" / "libvirt-sock"


def uri(lab_dir: Path) -> str:
    return f"qemu:///system?socket={socket_path(lab_dir)}"


def console_log(lab_dir: Path) -> Path:
    return lab_dir / "libvirt-guest-console.log"


def csi_share_dir(lab_dir: Path) -> Path:
    """A folder of this machine, writable at the same path inside the guest (9p)."""
    return lab_dir / "guest-csi"


def domain_uuid(lab_dir: Path) -> str:
    """The guest's domain (= SMBIOS) UUID, stable per lab, distinct from the QEMU guest's."""
    return str(uuid.uuid5(uuid.NAMESPACE_URL, f"lunbridge-lab-libvirt-guest:{lab_dir.resolve()}"))


def virsh(
    lab_dir: Path, *args: str, check: bool = True, timeout: float = 60.0
) -> subprocess.CompletedProcess[str]:
    """Run `virsh -c <the lab's URI> ARGS`."""
    argv = ["virsh", "-q", "-c", uri(lab_dir), *args]
    result = subprocess.run(argv, capture_output=True, text=True, timeout=timeout, check=False)
    if check and result.returncode != 0:
        raise LabError(f"{shlex.join(argv)} failed: {result.stderr.strip() or result.stdout.strip()}")
    return result


def _check_user() -> None:
    try:
        pwd.getpwnam(QEMU_USER)
    except KeyError:
        raise LabError(
            f"user {QEMU_USER} does not exist; Debian's libvirtd refuses to start without it: "
            "run hack/peers/install-debian.sh (it runs `useradd -r libvirt-qemu`)"
        ) from None


def _start_script(lab_dir: Path, cache: Path) -> str:
    """What runs in the private mount namespace: bind the lab's folders over libvirtd's
    system folders, then become libvirtd (so the recorded PID is libvirtd's)."""
    base = root(lab_dir)
    lines = ["set -e"]
    binds = {**{str(base / key): target for key, target in SYSTEM_DIRS.items()}, str(cache): CACHE_DIR}
    for source, target in binds.items():
        lines.append(f"mkdir -p {shlex.quote(target)}")
        lines.append(f"mount --bind {shlex.quote(source)} {shlex.quote(target)}")
    lines.append(f"exec libvirtd -f /etc/libvirt/libvirtd.conf -p {shlex.quote(str(base / 'libvirtd.pid'))}")
    return "\n".join(lines)


def start(lab_dir: Path, cache_dir: Path) -> str:
    """Start the lab's libvirtd (or find it running); returns its URI once it answers."""
    if procs.read_pid(lab_dir, NAME) is None:
        _check_user()
        base = root(lab_dir)
        for key in SYSTEM_DIRS:
            (base / key).mkdir(parents=True, exist_ok=True)
        cache = cache_dir / "libvirt-cache"
        cache.mkdir(parents=True, exist_ok=True)
        sock = socket_path(lab_dir)
        sock.parent.mkdir(parents=True, exist_ok=True)
        for stale in sock.parent.glob("libvirt-*sock*"):
            stale.unlink()
        log = procs.log_file(lab_dir, NAME)
        (base / "etc" / "libvirtd.conf").write_text(LIBVIRTD_CONF.format(sock_dir=sock.parent, log=log))
        (base / "etc" / "qemu.conf").write_text(QEMU_CONF)
        argv = ["unshare", "--mount", "--propagation", "private", "sh", "-c", _start_script(lab_dir, cache)]
        procs.spawn(lab_dir, NAME, argv)
    _wait_ready(lab_dir)
    return uri(lab_dir)


def _wait_ready(lab_dir: Path) -> None:
    deadline = time.monotonic() + START_TIMEOUT
    while True:
        if procs.read_pid(lab_dir, NAME) is None:
            raise LabError(
                f"libvirtd exited while starting; see {procs.log_file(lab_dir, NAME)}:\n"
                + procs.tail(procs.log_file(lab_dir, NAME))
            )
        if socket_path(lab_dir).exists():
            left = max(deadline - time.monotonic(), 1.0)
            with contextlib.suppress(subprocess.TimeoutExpired):  # the deadline check below reports it
                if virsh(lab_dir, "version", check=False, timeout=left).returncode == 0:
                    return
        if time.monotonic() > deadline:
            log = procs.log_file(lab_dir, NAME)
            raise LabError(f"libvirtd did not answer within {START_TIMEOUT}s; see {log}")
        time.sleep(0.05)


def running(lab_dir: Path) -> bool:
    """The lab's libvirtd runs, and so does a guest of it."""
    return procs.read_pid(lab_dir, NAME) is not None and any(_alive(pid) for pid in _qemu_pids(lab_dir))


def _qemu_pids(lab_dir: Path) -> list[int]:
    """PIDs of the QEMU processes of the lab's libvirtd (their pid files are in its run folder)."""
    pids = []
    for pid_file in (root(lab_dir) / "run" / "qemu").glob("*.pid"):
        try:
            pids.append(int(pid_file.read_text().strip()))
        except (OSError, ValueError):
            continue
    return pids


def stop(lab_dir: Path) -> None:
    """Stop the lab's guests and libvirtd; leaves no QEMU and no libvirtd.

    The lab's guests hold nothing worth a clean shutdown (their root is read-only), and
    `virsh destroy` waits 1.5-3 s for QEMU to honour SIGTERM, so they are killed outright;
    libvirtd sees their monitors close and forgets them."""
    for pid in _qemu_pids(lab_dir):
        _kill(pid)
    if procs.read_pid(lab_dir, NAME) is not None:
        listed = virsh(lab_dir, "list", "--name", check=False, timeout=30)
        for name in listed.stdout.split():  # anything a pid file did not name
            virsh(lab_dir, "destroy", name, check=False, timeout=30)
    procs.stop(lab_dir, NAME, timeout=15)
    for pid in _qemu_pids(lab_dir):  # one libvirtd started after the first look (never, but cheap)
        _kill(pid)
    sock = socket_path(lab_dir)
    if sock.parent.is_dir():
        for stale in sock.parent.glob("libvirt-*sock*"):
            stale.unlink()
    (guest_lab.socket_dir(lab_dir) / AGENT_SOCKET).unlink(missing_ok=True)


def _kill(pid: int) -> None:
    try:
        os.kill(pid, signal.SIGKILL)
    except ProcessLookupError:
        return
    deadline = time.monotonic() + 5
    while time.monotonic() < deadline and _alive(pid):
        time.sleep(0.02)


def _alive(pid: int) -> bool:
    """True while `pid` runs (a zombie waiting for libvirtd to reap it counts as gone)."""
    try:
        state = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()[0]
    except (OSError, IndexError):
        return False
    return state != "Z"


def domain_xml(
    lab_dir: Path,
    cache_dir: Path,
    node_port: int,
    *,
    memory_mib: int = 3072,  # a kubelet, containerd and images in tmpfs (LAB_KUBELET=1)
    python: str | None = None,
    api_port: int | None = None,
    tgt_port: int | None = None,
) -> str:
    """The lab guest as a libvirt domain (see the module docstring); 127.0.0.1:`node_port`
    leads to the guest's GUEST_CSI_PORT; in the guest GUEST_APISERVER leads to this machine's
    127.0.0.1:`api_port` and GUEST_TGT_PORTAL to tgtd's 127.0.0.1:`tgt_port` (when given)."""
    kernel, initrd = guest_lab.assets(cache_dir)
    ET.register_namespace("qemu", QEMU_NS)
    dom = ET.Element("domain", type="qemu")
    ET.SubElement(dom, "name").text = DOMAIN
    ET.SubElement(dom, "uuid").text = domain_uuid(lab_dir)
    ET.SubElement(dom, "memory", unit="MiB").text = str(memory_mib)
    ET.SubElement(dom, "vcpu").text = "1"
    os_ = ET.SubElement(dom, "os")
    ET.SubElement(os_, "type", arch="x86_64", machine="pc").text = "hvm"
    ET.SubElement(os_, "loader", type="rom").text = "/usr/share/qemu/qboot.rom"
    ET.SubElement(os_, "kernel").text = str(kernel)
    ET.SubElement(os_, "initrd").text = str(initrd)
    # the host's / cached in the guest (Python starts 2x faster there: the node plugin in 20 s
    # instead of 40 s), the checkout uncached so that an edit shows at the next start
    ET.SubElement(os_, "cmdline").text = guest_lab.kernel_cmdline(python, root_cache="loose", repo_share=True)
    ET.SubElement(ET.SubElement(dom, "features"), "acpi")  # PCI hot-plug of new controllers
    ET.SubElement(dom, "cpu", mode="maximum", migratable="off")
    ET.SubElement(dom, "clock", offset="utc")
    for event in ("on_poweroff", "on_reboot", "on_crash"):
        ET.SubElement(dom, event).text = "destroy"
    devices = ET.SubElement(dom, "devices")
    ET.SubElement(devices, "emulator").text = "/usr/bin/qemu-system-x86_64"
    scsi = ET.SubElement(devices, "controller", type="scsi", index="0", model="virtio-scsi")
    ET.SubElement(scsi, "alias", name="ua-scsi0")
    ET.SubElement(devices, "controller", type="usb", model="none")
    share = ET.SubElement(devices, "filesystem", type="mount", accessmode="squash", multidevs="remap")
    ET.SubElement(share, "source", dir="/")
    ET.SubElement(share, "target", dir="hostroot")  # the 9p mount tag build-guest.sh's init mounts
    ET.SubElement(share, "readonly")
    repo_share = ET.SubElement(devices, "filesystem", type="mount", accessmode="squash", multidevs="remap")
    ET.SubElement(repo_share, "source", dir=str(paths.REPO_DIR))
    ET.SubElement(repo_share, "target", dir=guest_lab.REPO_SHARE_TAG)
    ET.SubElement(repo_share, "readonly")
    csi_share = ET.SubElement(devices, "filesystem", type="mount", accessmode="passthrough")
    ET.SubElement(csi_share, "source", dir=str(csi_share_dir(lab_dir)))
    ET.SubElement(csi_share, "target", dir=CSI_SHARE_TAG)
    console = str(console_log(lab_dir))
    serial = ET.SubElement(devices, "serial", type="file")
    ET.SubElement(serial, "source", path=console)
    ET.SubElement(serial, "target", port="0")
    channel = ET.SubElement(devices, "channel", type="unix")
    ET.SubElement(channel, "source", mode="bind", path=str(guest_lab.socket_dir(lab_dir) / AGENT_SOCKET))
    ET.SubElement(channel, "target", type="virtio", name=guest_lab.AGENT_PORT)
    ET.SubElement(devices, "memballoon", model="none")
    # the guest sees a LUN only after a targeted rescan (QEMU's virtio-scsi `hotplug` property)
    qemu = f"{{{QEMU_NS}}}"
    override = ET.SubElement(ET.SubElement(dom, qemu + "override"), qemu + "device", alias="ua-scsi0")
    frontend = ET.SubElement(override, qemu + "frontend")
    ET.SubElement(frontend, qemu + "property", name="hotplug", type="bool", value="false")
    forward = f"tcp:127.0.0.1:{node_port}-:{GUEST_CSI_PORT}"
    if api_port is not None:
        address, port = GUEST_APISERVER
        forward += f",guestfwd=tcp:{address}:{port}-cmd:busybox nc 127.0.0.1 {api_port}"
    if tgt_port is not None:
        address, port = GUEST_TGT_PORTAL
        forward += f",guestfwd=tcp:{address}:{port}-cmd:busybox nc 127.0.0.1 {tgt_port}"
    nic = [
        "-netdev", f"user,id=labnet,restrict=on,hostfwd={forward}",
        "-device", f"virtio-net-pci,netdev=labnet,bus=pci.0,addr={NIC_PCI_SLOT}",
    ]  # fmt: skip
    commandline = ET.SubElement(dom, qemu + "commandline")
    for arg in nic:
        ET.SubElement(commandline, qemu + "arg", value=arg)
    return ET.tostring(dom, encoding="unicode")


@dataclass(frozen=True)
class GuestInfo:
    name: str
    uuid: str

    @property
    def provider_id(self) -> str:
        return f"libvirt://{self.uuid}"


def create_guest(
    lab_dir: Path, cache_dir: Path, node_port: int, api_port: int | None = None, tgt_port: int | None = None
) -> GuestInfo:
    """Start the lab guest through libvirt (a transient domain; it boots in the background)."""
    info = GuestInfo(DOMAIN, domain_uuid(lab_dir))
    if virsh(lab_dir, "domstate", DOMAIN, check=False).stdout.strip() == "running":
        return info
    virsh(lab_dir, "destroy", DOMAIN, check=False)
    (guest_lab.socket_dir(lab_dir) / AGENT_SOCKET).unlink(missing_ok=True)
    xml_file = root(lab_dir) / f"{DOMAIN}.xml"
    csi_share_dir(lab_dir).mkdir(parents=True, exist_ok=True)
    xml_file.write_text(domain_xml(lab_dir, cache_dir, node_port, api_port=api_port, tgt_port=tgt_port))
    virsh(lab_dir, "create", str(xml_file))
    return info


class LibvirtGuest(AgentGuest):
    """The running libvirt guest: run commands in it through the same agent as the QEMU guest."""

    def __init__(self, lab_dir: Path, boot_timeout: float = BOOT_TIMEOUT) -> None:
        self.lab_dir = lab_dir
        self.info = GuestInfo(DOMAIN, domain_uuid(lab_dir))
        deadline = time.monotonic() + boot_timeout
        path = guest_lab.socket_dir(lab_dir) / AGENT_SOCKET
        self._agent = Agent(path, boot_timeout, self._alive, self._fail)
        self._agent.wait(deadline)

    def _alive(self) -> bool:
        return running(self.lab_dir)

    def console_tail(self, lines: int = 30) -> str:
        return procs.tail(console_log(self.lab_dir), lines)

    def _fail(self, what: str) -> LabError:
        qemu_log = root(self.lab_dir) / "log" / "qemu" / f"{DOMAIN}.log"
        return LabError(
            f"libvirt guest {what}; see {console_log(self.lab_dir)} and {qemu_log}\n"
            f"--- console tail ---\n{self.console_tail()}\n--- qemu log ---\n{procs.tail(qemu_log, 10)}"
        )

    def domain_xml(self) -> str:
        """The domain's live XML, read straight from libvirtd."""
        return virsh(self.lab_dir, "dumpxml", DOMAIN).stdout


def connect_guest(lab_dir: Path, boot_timeout: float = BOOT_TIMEOUT) -> LibvirtGuest:
    return LibvirtGuest(lab_dir, boot_timeout)
