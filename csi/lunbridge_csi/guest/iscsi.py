"""open-iscsi on a node that logs in with its own initiator (`initiator` mode): node records for
exactly the target and portal the publish context names, login, the one targeted LUN scan, and
logout when the session's last lunbridge LUN is gone.

Why each rule:
- The record is made from the publish context (`iscsiadm -m node -o new -T … -p …`), never
  from a SendTargets discovery: a storage server's discovery answer may name addresses this
  node cannot reach, and would add records for every target it serves.
- `node.startup = manual`: the host's iscsid must not log in to it by itself at boot (NodeStage
  does, for the volumes the kubelet stages); `node.session.scan = manual`: a login must not
  make every LUN of the target appear (the node scans the one LUN id it stages).
- A session that exists already (the node plugin restarted, another volume on the same target)
  is adopted, not duplicated: sessions are read from sysfs
  (/sys/class/iscsi_session/sessionN/{targetname,target_id}, its connection's
  persistent_address/persistent_port, and the SCSI host the session hangs under).
- CHAP: `node.session.auth.*` set on the record (one-way; `_in` for mutual). The secrets pass
  on iscsiadm's command line (open-iscsi has no other way), which lunbridge never logs, and
  `lunbridge.redact` masks them in every error.
- A refused login is not retried here (iscsid does not retry an authentication or
  authorization failure either), and the record is deleted, so nothing logs in again behind
  the kubelet's back: the kubelet's own backoff paces the retries.

iscsiadm's exit codes (open-iscsi's iscsi_err.h): 15 session exists, 19 non-retryable login
failure (the target refused this initiator: not in its ACL), 21 no records/sessions found,
24 authentication failure (CHAP).
"""

from __future__ import annotations

import logging
from dataclasses import dataclass
from pathlib import Path

from lunbridge.command import CommandFailed, Result, Runner
from lunbridge.errors import Conflict, Unauthenticated, Unavailable
from lunbridge.storage.base import Chap
from lunbridge_csi.guest.limits import Limits

log = logging.getLogger(__name__)

ISCSI_SESSIONS = Path("sys/class/iscsi_session")
ISCSI_CONNECTIONS = Path("sys/class/iscsi_connection")

SESSION_EXISTS = 15
LOGIN_REFUSED = 19
NOTHING_FOUND = 21
AUTH_FAILED = 24


@dataclass(frozen=True)
class Session:
    """One iSCSI session of this node, as sysfs shows it."""

    sid: int
    target: str
    portal: str  # host:port (an IPv6 host in brackets)
    host: str  # its SCSI host, hostN
    target_id: int  # the SCSI target id of the session on that host (H:0:T:L)


def _read(path: Path) -> str:
    try:
        return path.read_text().strip()
    except OSError:
        return ""


def _portal(address: str, port: str) -> str:
    return f"[{address}]:{port}" if ":" in address else f"{address}:{port}"


def _host_of(session_dir: Path) -> str:
    """The hostN a session hangs under: a parent of its device folder."""
    try:
        resolved = session_dir.resolve()
    except OSError:
        return ""
    return next((part for part in reversed(resolved.parts) if part.startswith("host")), "")


def sessions(root: Path = Path("/")) -> list[Session]:
    """Every iSCSI session of this node (a session half set up or half torn down is skipped)."""
    found = []
    folder = root / ISCSI_SESSIONS
    for entry in sorted(folder.iterdir()) if folder.is_dir() else []:
        sid_text = entry.name.removeprefix("session")
        target, target_id = _read(entry / "targetname"), _read(entry / "target_id")
        connection = root / ISCSI_CONNECTIONS / f"connection{sid_text}:0"
        address = _read(connection / "persistent_address") or _read(connection / "address")
        port = _read(connection / "persistent_port") or _read(connection / "port")
        host = _host_of(entry)
        if not (sid_text.isdigit() and target and address and port and host and target_id.isdigit()):
            continue
        found.append(Session(int(sid_text), target, _portal(address, port), host, int(target_id)))
    return found


def _same_portal(a: str, b: str) -> bool:
    return a.lower().replace("[", "").replace("]", "") == b.lower().replace("[", "").replace("]", "")


def session_of(root: Path, target: str, portal: str) -> Session | None:
    """The session to `target` through `portal`, if this node has one."""
    return next((s for s in sessions(root) if s.target == target and _same_portal(s.portal, portal)), None)


class Iscsiadm:
    """iscsiadm, each call within `limits.login` seconds (a login waits on the network)."""

    def __init__(self, runner: Runner, limits: Limits) -> None:
        self.runner = runner
        self.limits = limits

    async def _node(self, target: str, portal: str, *args: str) -> Result:
        argv = ["iscsiadm", "-m", "node", "-T", target, "-p", portal, *args]
        return await self.runner(argv, self.limits.login)

    async def _set(self, target: str, portal: str, name: str, value: str) -> None:
        (await self._node(target, portal, "-o", "update", "-n", name, "-v", value)).check()

    async def ensure_record(self, target: str, portal: str, chap: Chap | None) -> None:
        """The node record of exactly `target` at `portal`: manual start, manual scan, CHAP."""
        made = await self._node(target, portal, "-o", "new")
        if made.returncode not in (0, SESSION_EXISTS):
            made.check()
        await self._set(target, portal, "node.startup", "manual")
        await self._set(target, portal, "node.session.scan", "manual")
        if chap is None:
            await self._set(target, portal, "node.session.auth.authmethod", "None")
            return
        await self._set(target, portal, "node.session.auth.authmethod", "CHAP")
        await self._set(target, portal, "node.session.auth.username", chap.user)
        await self._set(target, portal, "node.session.auth.password", chap.secret)
        if chap.mutual_user is not None and chap.mutual_secret is not None:
            await self._set(target, portal, "node.session.auth.username_in", chap.mutual_user)
            await self._set(target, portal, "node.session.auth.password_in", chap.mutual_secret)

    async def login(self, target: str, portal: str, chap: bool) -> None:
        """Log in (a session that exists is success); a refusal names its likely cause and
        leaves no record behind."""
        result = await self._node(target, portal, "--login")
        if result.returncode in (0, SESSION_EXISTS):
            return
        if result.returncode in (AUTH_FAILED, LOGIN_REFUSED):
            await self.delete_record(target, portal)
        if result.returncode == AUTH_FAILED:
            hint = (
                "the CHAP user or secret of the node-stage secret is wrong"
                if chap
                else "the target asks for CHAP and no node-stage secret was given (set "
                "csi.storage.k8s.io/node-stage-secret-name on the StorageClass)"
            )
            raise Unauthenticated(f"login to {target} at {portal} failed authentication: {hint}; not retried")
        if result.returncode == LOGIN_REFUSED:
            raise Conflict(
                f"target {target} at {portal} refused this node's login (a non-retryable login failure): "
                "most often this node's IQN is not among the target's initiators (see its LunbridgeNode "
                "and InitiatorGroup), else the target is gone"
            )
        raise CommandFailed(result)

    async def logout(self, target: str, portal: str) -> None:
        """Log out and delete the record (no session or no record is success)."""
        result = await self._node(target, portal, "--logout")
        if result.returncode not in (0, NOTHING_FOUND):
            result.check()
        await self.delete_record(target, portal)

    async def delete_record(self, target: str, portal: str) -> None:
        result = await self._node(target, portal, "-o", "delete")
        if result.returncode not in (0, NOTHING_FOUND):
            result.check()


async def log_in(
    adm: Iscsiadm, root: Path, target: str, portals: tuple[str, ...], chap: Chap | None
) -> tuple[Session, bool]:
    """A session to `target` through the first portal that takes this node (the portals of a
    checked publish context): an existing one adopted (False), else a record made and logged
    in (True). A refusal (CHAP, ACL) ends it at once; a portal that cannot be reached, or whose
    record cannot be written, leaves no record and the next one to try; Unavailable when none
    could."""
    for portal in portals:
        if (found := session_of(root, target, portal)) is not None:
            log.info("adopting session %d to %s at %s (%s)", found.sid, target, portal, found.host)
            return found, False
    problems = []
    for portal in portals:
        try:
            await adm.ensure_record(target, portal, chap)
            await adm.login(target, portal, chap is not None)
        except CommandFailed as exc:
            problems.append(str(exc))
            await adm.delete_record(target, portal)
            continue
        found = session_of(root, target, portal)
        if found is not None:
            log.info("logged in to %s at %s: session %d on %s", target, portal, found.sid, found.host)
            return found, True
        problems.append(f"{portal}: logged in, but sysfs shows no session")
    raise Unavailable(f"no session to {target} through {', '.join(portals)}: {'; '.join(problems)}")
