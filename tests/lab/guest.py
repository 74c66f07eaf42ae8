"""The lab's guest VM: a real Linux kernel behind a real virtio-scsi bus, driven over QMP.

lunbridge's node plugin runs inside VM nodes: it rescans one SCSI address, finds the disk by
its NAA and formats/mounts it. Nothing short of a real guest kernel proves that code, and the
hot-plug it reacts to must come from a real hypervisor. So the lab boots QEMU (always TCG:
this machine's /dev/kvm cannot boot a stock kernel) with the kernel and initramfs built by
hack/peers/build-guest.sh. The guest's root is the host's own / (9p, read-only), so it runs the
host's Python and the project's code unchanged; commands reach it through a small agent on a
virtio-serial port (tests/lab/guest_agent.py), SAN LUNs through QEMU's iSCSI initiator and
QMP (`blockdev-add` + `device_add` of `scsi-block`, i.e. a physical-mode RDM).
"""

from __future__ import annotations

import hashlib
import shlex
import subprocess
import sys
import tempfile
import time
import uuid
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from tests.lab import paths, procs
from tests.lab.paths import REPO_DIR
from tests.lab.procs import LabError
from tests.lab.qmp import LineSocket, Qmp

NAME = "guest"
AGENT_PORT = "lunbridge.agent"
REPO_SHARE_TAG = "labrepo"  # the 9p tag build-guest.sh's init mounts the checkout from
AGENT_SCRIPT = Path(__file__).resolve().parent / "guest_agent.py"
# Writable tmpfs mount points in the guest (its root is read-only); build-guest.sh creates them.
STATE_DIR = "/var/lib/lunbridge-guest"
SCSI_BUS = "scsi0.0"  # the guest's virtio-scsi controller (hotplug=off: only rescans see LUNs)
BOOT_TIMEOUT = 180.0
AGENT_MARGIN = 30.0  # extra host-side wait on top of a command's own timeout (TCG is slow)


@dataclass(frozen=True)
class GuestResult:
    """What `subprocess.run` would return for a command run in the guest."""

    args: list[str] | str
    returncode: int
    stdout: str
    stderr: str

    def check_returncode(self) -> None:
        if self.returncode != 0:
            raise subprocess.CalledProcessError(self.returncode, self.args, self.stdout, self.stderr)


def assets(cache_dir: Path) -> tuple[Path, Path]:
    """The guest kernel and initramfs built by hack/peers/build-guest.sh."""
    kernel, initrd = cache_dir / "guest" / "vmlinuz", cache_dir / "guest" / "initrd.gz"
    for path in (kernel, initrd):
        if not path.is_file():
            raise LabError(f"{path} is missing: run hack/peers/build-guest.sh")
    return kernel, initrd


def socket_dir(lab_dir: Path) -> Path:
    """Where the QMP and agent sockets live (a short /tmp path if lab_dir is too long)."""
    if len(str(lab_dir.resolve())) < 80:
        return lab_dir
    digest = hashlib.sha256(str(lab_dir.resolve()).encode()).hexdigest()[:12]
    return Path(tempfile.gettempdir()) / f"lunbridge-guest-{digest}"


def vm_uuid(lab_dir: Path) -> str:
    """The guest's SMBIOS system UUID (what DMI product_uuid shows inside), stable per lab."""
    return str(uuid.uuid5(uuid.NAMESPACE_URL, f"lunbridge-lab-guest:{lab_dir.resolve()}"))


def console_log(lab_dir: Path) -> Path:
    return lab_dir / f"{NAME}-console.log"


def qemu_argv(
    lab_dir: Path,
    cache_dir: Path,
    memory: str = "1G",
    python: str | None = None,
    root_cache: str | None = None,
) -> list[str]:
    """The QEMU command line of the lab guest (`root_cache`: the 9p root's cache= mode)."""
    kernel, initrd = assets(cache_dir)
    append = kernel_cmdline(python, root_cache)
    socks = socket_dir(lab_dir)
    return [
        "qemu-system-x86_64",
        "-accel", "tcg", "-cpu", "max", "-smp", "1", "-m", memory, "-uuid", vm_uuid(lab_dir),
        "-nodefaults", "-no-user-config", "-display", "none", "-no-reboot",
        "-bios", "/usr/share/qemu/qboot.rom",
        "-serial", f"file:{console_log(lab_dir)}",
        "-virtfs", "local,path=/,mount_tag=hostroot,security_model=none,readonly=on,multidevs=remap",
        "-device", "virtio-scsi-pci,id=scsi0,hotplug=off",
        "-qmp", f"unix:{socks / 'guest-qmp.sock'},server=on,wait=off",
        "-device", "virtio-serial-pci,id=vser0",
        "-chardev", f"socket,path={socks / 'guest-agent.sock'},server=on,wait=off,id=agent",
        "-device", f"virtserialport,bus=vser0.0,chardev=agent,name={AGENT_PORT}",
        "-kernel", str(kernel), "-initrd", str(initrd), "-append", append,
    ]  # fmt: skip


def _node(name: str) -> dict[str, Any]:
    return {"node-name": name}


def kernel_cmdline(python: str | None = None, root_cache: str | None = None, repo_share: bool = False) -> str:
    """The guest kernel's command line: what build-guest.sh's init reads (agent, Python, the
    writable state folder, the 9p root's cache mode). Shared by every lab guest. `repo_share`:
    the checkout comes from a share of its own (tag REPO_SHARE_TAG, never cached), and the
    folders of it that the root serves too (its venv) are bound from the root."""
    python = python or sys.executable
    for path in (str(AGENT_SCRIPT), python):
        if any(c.isspace() for c in path):
            raise LabError(f"{path}: the guest's kernel command line cannot carry spaces")
    append = (
        f"console=ttyS0 quiet panic=-1 lunbridge.agent={AGENT_SCRIPT} "
        f"lunbridge.python={python} lunbridge.state={STATE_DIR}"
    )
    if root_cache:
        append += f" lunbridge.9pcache={root_cache}"
    # the guest mounts tmpfs over /tmp, /run and /mnt: a checkout, a venv or a peer cache there
    # (LUNBRIDGE_CACHE: the guest runs open-iscsi from it) must stay visible
    hidden = ("/tmp/", "/run/", "/mnt/")
    folders = {str(p) for p in (REPO_DIR, Path(sys.prefix), Path(python).parent.parent, paths.cache_dir())}
    keep = sorted(f for f in folders if f.startswith(hidden) and not any(c.isspace() or c == "," for c in f))
    if keep:
        append += f" lunbridge.keep={','.join(keep)}"
    if repo_share:
        repo = str(REPO_DIR)
        inner = sorted(f for f in folders if f.startswith(repo + "/") and "," not in f and f.split() == [f])
        if any(c.isspace() for c in repo):
            raise LabError(f"{repo}: the guest's kernel command line cannot carry spaces")
        append += f" lunbridge.repo={repo}" + (f" lunbridge.repocached={','.join(inner)}" if inner else "")
    return append


class Agent:
    """The host end of the guest's command agent (tests/lab/guest_agent.py): JSON lines over
    the unix socket the hypervisor connects to the guest's `lunbridge.agent` virtio-serial
    port. The same for every lab guest, whoever started it (QEMU directly, or libvirt).

    `alive` tells whether the VM still runs; `fail(what)` makes the error to raise, with
    whatever logs the guest's owner can show."""

    def __init__(
        self, path: Path, timeout: float, alive: Callable[[], bool], fail: Callable[[str], LabError]
    ) -> None:
        self._conn = LineSocket(path, timeout, alive)
        self._alive = alive
        self._fail = fail

    def wait(self, deadline: float) -> None:
        """Until the agent answers a ping (the guest has booted), or fail at `deadline`."""
        while time.monotonic() < deadline:
            if not self._alive():
                raise self._fail("VM exited while booting")
            req_id = uuid.uuid4().hex
            try:
                self._conn.send({"id": req_id, "op": "ping"}, timeout=2.0)
            except TimeoutError:
                continue  # the guest has not opened its agent port yet; QEMU holds our bytes
            if self._reply(req_id, min(time.monotonic() + 2.0, deadline)) is not None:
                return
        raise self._fail("agent did not answer within the boot timeout")

    def _reply(self, req_id: str, deadline: float) -> dict[str, Any] | None:
        """The agent's reply to `req_id`; replies to older (abandoned) requests are dropped."""
        while True:
            reply = self._conn.recv(deadline)
            if reply is None or reply.get("id") == req_id:
                return reply

    def run(
        self,
        cmd: list[str] | str,
        timeout: float = 60.0,
        *,
        check: bool = False,
        input: str | None = None,  # same name as subprocess.run's
        env: dict[str, str] | None = None,
    ) -> GuestResult:
        """Run `cmd` as root in the guest (a string goes through /bin/sh -c).

        Raises subprocess.TimeoutExpired like subprocess.run, and CalledProcessError if
        `check` and the command failed.
        """
        argv = ["/bin/sh", "-c", cmd] if isinstance(cmd, str) else list(cmd)
        req_id = uuid.uuid4().hex
        req = {"id": req_id, "op": "run", "argv": argv, "timeout": timeout, "input": input, "env": env}
        self._conn.send(req)
        reply = self._reply(req_id, time.monotonic() + timeout + AGENT_MARGIN)
        if reply is None:
            raise self._fail(f"agent gave no answer to {shlex.join(argv)!r} within {timeout}s")
        if "error" in reply:
            raise LabError(f"guest agent: {reply['error']}")
        if reply["timed_out"]:
            raise subprocess.TimeoutExpired(cmd, timeout, reply["stdout"], reply["stderr"])
        result = GuestResult(cmd, int(reply["returncode"]), reply["stdout"], reply["stderr"])
        if check:
            result.check_returncode()
        return result

    def close(self) -> None:
        self._conn.close()


class AgentGuest:
    """A running lab guest reached through its command agent (whoever started it)."""

    _agent: Agent

    def run(
        self,
        cmd: list[str] | str,
        timeout: float = 60.0,
        *,
        check: bool = False,
        input: str | None = None,  # same name as subprocess.run's
        env: dict[str, str] | None = None,
    ) -> GuestResult:
        """Run `cmd` as root in the guest (see `Agent.run`)."""
        return self._agent.run(cmd, timeout, check=check, input=input, env=env)

    def close(self) -> None:
        self._agent.close()


class Guest(AgentGuest):
    """A running lab guest: run commands in it, hot-plug and unplug SAN LUNs."""

    def __init__(self, lab_dir: Path, boot_timeout: float = BOOT_TIMEOUT) -> None:
        self.lab_dir = lab_dir
        socks = socket_dir(lab_dir)
        deadline = time.monotonic() + boot_timeout
        self._agent = Agent(socks / "guest-agent.sock", boot_timeout, self._alive, self._fail)
        self._qmp = Qmp(socks / "guest-qmp.sock", max(deadline - time.monotonic(), 5.0))
        self._agent.wait(deadline)

    def _alive(self) -> bool:
        return procs.read_pid(self.lab_dir, NAME) is not None

    def console_tail(self, lines: int = 30) -> str:
        return procs.tail(console_log(self.lab_dir), lines)

    def _fail(self, what: str) -> LabError:
        return LabError(
            f"guest {what}; see {console_log(self.lab_dir)} and "
            f"{procs.log_file(self.lab_dir, NAME)}\n--- console tail ---\n{self.console_tail()}"
            f"\n--- qemu log ---\n{procs.tail(procs.log_file(self.lab_dir, NAME), 10)}"
        )

    def qmp(self, command: str, *, timeout: float = 30.0, **args: Any) -> Any:
        """Run a QMP command; hyphenated arguments go in as `**{"node-name": ...}`."""
        return self._qmp.command(command, timeout=timeout, **args)

    def wait_event(self, name: str, timeout: float = 30.0, **match: Any) -> dict[str, Any]:
        """Wait for QMP event `name` whose data matches `match` (e.g. device="lun1")."""
        return self._qmp.wait_event(name, timeout, **match)

    def attach_iscsi_lun(
        self,
        node_name: str,
        portal: str,
        target_iqn: str,
        lun: int,
        initiator_iqn: str,
        scsi_id: int,
        scsi_lun: int = 0,
        driver: str = "scsi-block",
        device_id: str | None = None,
    ) -> str:
        """Log QEMU's initiator `initiator_iqn` into `portal`/`target_iqn` LUN `lun` and plug it
        into the guest at SCSI target `scsi_id`, LUN `scsi_lun`; returns the device id.

        `scsi-block` passes SCSI through (the guest sees the array's serial and NAA, like a
        physical-mode RDM); `scsi-hd` emulates the disk (like a virtual-mode one). The guest
        sees nothing until it rescans that address (the controller has hotplug=off).
        """
        device_id = device_id or f"dev-{node_name}"
        blockdev: dict[str, Any] = {
            "driver": "iscsi",
            "node-name": node_name,
            "transport": "tcp",
            "portal": portal,
            "target": target_iqn,
            "lun": lun,
            "initiator-name": initiator_iqn,
            "cache": {"direct": True},
        }
        self.qmp("blockdev-add", **blockdev)
        device: dict[str, Any] = {
            "driver": driver,
            "id": device_id,
            "bus": SCSI_BUS,
            "drive": node_name,
            "scsi-id": scsi_id,
            "lun": scsi_lun,
        }
        try:
            self.qmp("device_add", **device)
        except LabError:
            self.qmp("blockdev-del", **_node(node_name))
            raise
        return device_id

    def detach(self, device_id: str, node_name: str, timeout: float = 30.0) -> None:
        """Unplug `device_id` (device_del, then wait DEVICE_DELETED) and drop its iSCSI node.

        Delete the disk in the guest first (`echo 1 > /sys/block/sdX/device/delete`), as a
        hypervisor host would expect before removing an RDM.
        """
        self.qmp("device_del", id=device_id)
        self.wait_event("DEVICE_DELETED", timeout, device=device_id)
        self.qmp("blockdev-del", **_node(node_name))

    def close(self) -> None:
        super().close()
        self._qmp.close()


def start(
    lab_dir: Path,
    cache_dir: Path,
    *,
    memory: str = "1G",
    python: str | None = None,
    root_cache: str | None = None,
    boot_timeout: float = BOOT_TIMEOUT,
) -> Guest:
    """Boot the lab guest (or connect to the one already running) and wait for its agent.

    `python` is the interpreter the agent runs with (default: this one); the guest sees the
    host's / except /tmp, /run, /mnt and /var/lib/lunbridge-guest, which are tmpfs there.
    `root_cache="loose"` makes Python start 2-3x faster in the guest, but host files changed
    while the guest runs may then look stale to it (default: uncached, always coherent).
    """
    spawned = procs.read_pid(lab_dir, NAME) is None
    if spawned:
        argv = qemu_argv(lab_dir, cache_dir, memory, python, root_cache)
        socks = socket_dir(lab_dir)
        socks.mkdir(parents=True, exist_ok=True)
        for sock in ("guest-qmp.sock", "guest-agent.sock"):
            (socks / sock).unlink(missing_ok=True)
        procs.spawn(lab_dir, NAME, argv)
    try:
        return Guest(lab_dir, boot_timeout)
    except BaseException:
        if spawned:  # never leave a half-booted VM behind, whatever went wrong
            stop(lab_dir)
        raise


def stop(lab_dir: Path) -> bool:
    """Stop the lab guest (QEMU quits cleanly on SIGTERM); True if it was running."""
    was_running = procs.stop(lab_dir, NAME)
    socks = socket_dir(lab_dir)
    for sock in ("guest-qmp.sock", "guest-agent.sock"):
        (socks / sock).unlink(missing_ok=True)
    return was_running
