"""Talking to tgtd: `tgtadm` command lines, the parser of `--op show`, and what its failures mean.

Kept apart from the backend so that the command lines and the parser can be tested with a
fake command runner, and so that the backend speaks in targets and LUs, not in argv.

Commands run through an injectable `lunbridge.command.Runner` (the default, `run`, never
blocks the event loop and ends a tgtadm that overruns the time limit). Measured on tgt 1.0.85:
- a tgtd that does not run makes tgtadm exit 107 ("failed to send request hdr to tgt
  daemon, Transport endpoint is not connected");
- every refusal exits 22 with one of tgt's fixed messages on stderr ("can't find the
  target", "this access control rule already exists", "this logical unit is still active" …);
- `--op new --mode logicalunit` takes no `--params`: scsi_id/scsi_sn are set by an update.

CHAP accounts (`--mode account`), measured on tgt 1.0.85:
- accounts are global (`--op new --user U --password P`, `--op delete --user U`) and bound to
  targets (`--op bind --tid T --user U`, with `--outgoing` for the target's own identity in
  mutual CHAP; at most one outgoing account per target). Deleting an account unbinds it from
  every target. `--op unbind` needs `--outgoing` for an outgoing binding, else it answers
  "can't find the account" (as it does for an unbound or unknown user);
- a second `new` of a user: "this account already exists"; a second incoming bind: the same;
  a second outgoing bind (of any user): "this target already has an outgoing account";
- `--op show --mode target` lists per target, under "Account information:", the incoming
  users, then the outgoing one as "U (outgoing)"; `--mode account --op show` lists all users
  ("Account list:"). Passwords are never shown, so a secret cannot be compared, only replaced;
- tgtadm cuts the user at the first ',' (it sends "user=U,password=P"); the password is the
  rest of that text, so it may hold ','. tgtd and libiscsi (and open-iscsi, whose buffers are
  256 bytes with the NUL) take at most 255 bytes of either: a 256-byte secret is accepted by
  tgtadm and then every login fails.
The password is on tgtadm's command line (tgtadm has no other way to take it), so the errors
this module makes show `--password ***` themselves, not trusting the general masking alone: a
secret that starts with '-' or holds a quote or ',' is past what `lunbridge.redact` can find.
"""

from __future__ import annotations

import asyncio
import shlex
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field

from lunbridge.command import CommandTimedOut, NotInstalled, Result, Runner, run
from lunbridge.errors import Busy, Conflict, InvalidArgument, LunbridgeError, Unavailable
from lunbridge.redact import MASK


@dataclass(frozen=True)
class ShownLu:
    lun: int
    type: str = ""
    scsi_id: str = ""
    scsi_sn: str = ""
    backing_path: str = ""
    thin: bool = False


@dataclass(frozen=True)
class ShownTarget:
    tid: int
    name: str
    luns: Mapping[int, ShownLu] = field(default_factory=dict)
    acl: tuple[str, ...] = ()
    incoming: tuple[str, ...] = ()  # CHAP users bound to the target (initiators prove these)
    outgoing: str | None = None  # the CHAP user the target proves itself with (mutual CHAP)

    @property
    def accounts(self) -> tuple[str, ...]:
        """Every CHAP user bound to the target, in either direction."""
        return self.incoming + ((self.outgoing,) if self.outgoing is not None else ())


def parse_show(text: str) -> dict[str, ShownTarget]:
    """Targets by IQN from `tgtadm --mode target --op show` (the sections it prints are fixed
    by indentation: target at 0, section at 4, LU/account/ACL entry at 8, LU field at 12)."""
    targets: dict[str, ShownTarget] = {}
    tid = 0
    name = ""
    section = ""
    luns: dict[int, dict[str, str]] = {}
    acl: list[str] = []
    incoming: list[str] = []
    outgoing: str | None = None
    current: dict[str, str] | None = None

    def flush() -> None:
        if name:
            targets[name] = ShownTarget(
                tid,
                name,
                {n: _lu(n, fields) for n, fields in luns.items()},
                tuple(acl),
                tuple(incoming),
                outgoing,
            )

    for raw in text.splitlines():
        line = raw.rstrip()
        if not line.strip():
            continue
        indent = len(line) - len(line.lstrip(" "))
        body = line.strip()
        if indent == 0 and body.startswith("Target "):
            flush()
            head, _, target_name = body.partition(": ")
            tid, name = int(head.split()[1]), target_name.strip()
            section, luns, acl, incoming, outgoing, current = "", {}, [], [], None, None
        elif indent == 4:
            section, current = body.rstrip(":"), None
        elif section == "LUN information" and indent == 8 and body.startswith("LUN: "):
            current = luns.setdefault(int(body.split()[1]), {})
        elif section == "LUN information" and indent >= 12 and current is not None:
            key, _, value = body.partition(":")
            current[key.strip()] = value.strip()
        elif section == "ACL information" and indent == 8:
            acl.append(body)
        elif section == "Account information" and indent == 8:
            if body.endswith(_OUTGOING):
                outgoing = body.removesuffix(_OUTGOING)
            else:
                incoming.append(body)
    flush()
    return targets


_OUTGOING = " (outgoing)"


def _lu(lun: int, fields: Mapping[str, str]) -> ShownLu:
    return ShownLu(
        lun=lun,
        type=fields.get("Type", ""),
        scsi_id=fields.get("SCSI ID", ""),
        scsi_sn=fields.get("SCSI SN", ""),
        backing_path=fields.get("Backing store path", ""),
        thin=fields.get("Thin-provisioning", "") == "Yes",
    )


def masked(argv: Sequence[str]) -> str:
    """`argv` as one shell line with the value of every `--password` replaced by `***`."""
    return shlex.join(MASK if i and argv[i - 1] == "--password" else arg for i, arg in enumerate(argv))


_DOWN_MARKS = ("failed to send request hdr", "can't connect to the tgt daemon", "Connection refused")


class Tgtadm:
    """One tgtd, addressed by its control socket number (`tgtadm -C N`)."""

    def __init__(self, control: int, portal: str, timeout: float, runner: Runner = run) -> None:
        self.control = control
        self.portal = portal
        self.timeout = timeout
        self._runner = runner
        self.commands = 0  # tgtadm runs so far (a failure after one may have left tgtd half-changed)

    def argv(self, *args: str) -> list[str]:
        return ["tgtadm", "-C", str(self.control), "--lld", "iscsi", *args]

    async def _run(self, *args: str, accept: tuple[str, ...] = ()) -> Result:
        """Run one tgtadm command; a refusal whose message contains one of `accept` is fine."""
        argv = self.argv(*args)
        self.commands += 1
        try:
            result = await self._runner(argv, self.timeout)
        except NotInstalled as exc:
            raise NotInstalled(exc.program, "tgt") from None
        except LunbridgeError as exc:  # a time-out quotes the command line: not with a secret
            if "--password" not in args:
                raise
            what = (
                f"did not finish within {self.timeout:g}s" if isinstance(exc, CommandTimedOut) else "failed"
            )
            raise Unavailable(f"`{masked(argv)}` {what}; check that tgtd -C {self.control} answers") from None
        if result.returncode == 0 or any(mark in result.stderr for mark in accept):
            return result
        raise self.error(result)

    def error(self, result: Result) -> LunbridgeError:
        """The domain error for a failed tgtadm command, with what to do about it."""
        message = result.stderr.strip().removeprefix("tgtadm: ") or f"exit status {result.returncode}"
        command = masked(result.argv)
        if result.returncode == 107 or any(mark in result.stderr for mark in _DOWN_MARKS):
            return Unavailable(
                f"tgtd does not answer on control socket {self.control} "
                f"(/var/run/tgtd/socket.{self.control}): {message}. Start it with "
                f"`tgtd -C {self.control} --iscsi portal={self.portal}` (or restart the service); "
                "lunbridge re-applies its targets, LUNs and ACLs on the next call"
            )
        if "still active" in message or "busy" in message:
            return Busy(f"tgtd refused `{command}`: {message}; I/O is in flight, retry shortly")
        if "invalid request" in message or "not allowed" in message or "unknown parameter" in message:
            return InvalidArgument(f"tgtd refused `{command}`: {message}")
        return Conflict(
            f"tgtd refused `{command}`: {message}; something else changed tgtd's targets "
            "at the same time — retry, lunbridge will re-apply its own state"
        )

    async def show(self) -> dict[str, ShownTarget]:
        result = await self._run("--op", "show", "--mode", "target")
        return parse_show(result.stdout)

    async def new_target(self, tid: int, name: str) -> bool:
        """Create target `tid`; False if that tid is taken (by anyone)."""
        result = await self._run(
            "--op", "new", "--mode", "target", "--tid", str(tid), "-T", name,
            accept=("this target already exists",),
        )  # fmt: skip
        return result.returncode == 0

    async def delete_target(self, tid: int) -> None:
        """Delete target `tid` with its LUs, ending its sessions; a missing target is fine."""
        await self._run(
            "--op", "delete", "--force", "--mode", "target", "--tid", str(tid),
            accept=("can't find the target",),
        )  # fmt: skip

    async def bind(self, tid: int, initiator: str) -> None:
        await self._run(
            "--op", "bind", "--mode", "target", "--tid", str(tid), "--initiator-name", initiator,
            accept=("already exists",),
        )  # fmt: skip

    async def unbind(self, tid: int, initiator: str) -> None:
        await self._run(
            "--op", "unbind", "--mode", "target", "--tid", str(tid), "--initiator-name", initiator,
            accept=("does not exist",),
        )  # fmt: skip

    async def new_lu(self, tid: int, lun: int, path: str, params: Mapping[str, str]) -> None:
        """Add LU `lun` backed by file `path`, then give it `params` (tgt takes no params at
        creation, so for a few milliseconds the LU carries tgt's default ids)."""
        await self._run(
            "--op", "new", "--mode", "logicalunit", "--tid", str(tid), "--lun", str(lun),
            "--backing-store", path,
        )  # fmt: skip
        await self.update_lu(tid, lun, params)

    async def update_lu(self, tid: int, lun: int, params: Mapping[str, str]) -> None:
        text = ",".join(f"{key}={value}" for key, value in params.items())
        await self._run(
            "--op", "update", "--mode", "logicalunit", "--tid", str(tid), "--lun", str(lun), "--params", text
        )

    async def delete_lu(self, tid: int, lun: int, *, attempts: int = 20) -> None:
        """Delete LU `lun`; tgt refuses while commands are queued on it, so retry briefly."""
        for attempt in range(attempts):
            try:
                await self._run(
                    "--op", "delete", "--mode", "logicalunit", "--tid", str(tid), "--lun", str(lun),
                    accept=("can't find the logical unit", "can't find the target"),
                )  # fmt: skip
                return
            except Busy:
                if attempt == attempts - 1:
                    raise
                await asyncio.sleep(0.05 * (attempt + 1))

    # -- CHAP accounts (see the module's docstring for what tgtd answers) -------------------

    async def new_account(self, user: str, secret: str) -> None:
        await self._run("--mode", "account", "--op", "new", "--user", user, "--password", secret)

    async def delete_account(self, user: str) -> None:
        """Delete the account (which unbinds it from every target); a missing one is fine."""
        await self._run(
            "--mode", "account", "--op", "delete", "--user", user, accept=("can't find the account",)
        )

    async def bind_account(self, tid: int, user: str, *, outgoing: bool = False) -> None:
        """Bind `user` to target `tid`: incoming (initiators prove it; binding it twice is
        fine) or outgoing (the target proves it; tgtd refuses a second outgoing account)."""
        direction = ("--outgoing",) if outgoing else ()
        await self._run(
            "--mode", "account", "--op", "bind", "--tid", str(tid), "--user", user, *direction,
            accept=() if outgoing else ("this account already exists",),
        )  # fmt: skip

    async def unbind_account(self, tid: int, user: str, *, outgoing: bool = False) -> None:
        direction = ("--outgoing",) if outgoing else ()
        await self._run(
            "--mode", "account", "--op", "unbind", "--tid", str(tid), "--user", user, *direction,
            accept=("can't find the account",),
        )  # fmt: skip
