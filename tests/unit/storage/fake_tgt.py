"""A fake tgtd behind the backend's command runner: it answers tgtadm command lines the way
tgt 1.0.85 does (same exit codes, same messages, same `--op show` layout), so the backend's
argument building, parsing and restore logic can be tested without a daemon.

CHAP accounts as tgt 1.0.85 keeps them (measured, and read in its target.c): global users with
passwords, bound to targets incoming or outgoing (one outgoing per target), deleting an
account unbinds it everywhere, `unbind` of an outgoing binding needs `--outgoing`, and `show`
lists bound users without passwords ("U", "U (outgoing)"). A target's incoming accounts are
tgtd's array of slots: bind takes the first free slot, unbind empties the slot and lowers the
count, and `show` and the login check walk the first `count` slots only; a hole there is
where `show` makes the real tgtd die, and the fake fails the test (`TgtdCrash`). `admits`
answers what tgtd would answer a login."""

from __future__ import annotations

import shutil
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field

from lunbridge.command import Result


@dataclass
class FakeLu:
    path: str
    scsi_id: str = ""
    scsi_sn: str = ""
    thin: bool = False


class TgtdCrash(AssertionError):
    """What the real tgtd does here is die (it follows a NULL account in `show`)."""


@dataclass
class FakeTarget:
    name: str
    luns: dict[int, FakeLu] = field(default_factory=dict)
    acl: list[str] = field(default_factory=list)
    slots: list[str | None] = field(default_factory=lambda: [None] * 16)  # incoming accounts
    count: int = 0
    outgoing: str | None = None

    @property
    def incoming(self) -> list[str]:
        """The incoming users as `show` prints them; TgtdCrash where the real tgtd dies."""
        walked = self.slots[: self.count]
        if None in walked:
            raise TgtdCrash(f"target {self.name}: a hole in its incoming accounts {self.slots[:4]}")
        return [user for user in walked if user is not None]

    def bind_incoming(self, user: str) -> str:
        if user in self.slots:
            return "this account already exists"
        if self.count < len(self.slots):
            self.slots[self.slots.index(None)] = user
        else:
            self.slots.append(user)
        self.count += 1
        return ""

    def unbind_incoming(self, user: str) -> str:
        if user not in self.slots:
            return "can't find the account"
        self.slots[self.slots.index(user)] = None
        self.count -= 1
        return ""

    def checks_chap_of(self, user: str) -> bool:
        """Does the login check find `user` (it skips holes, and misses what lies past them)?"""
        return user in self.slots[: self.count]


class FakeTgtd:
    """State of one fake tgtd; call it as a `Runner`."""

    def __init__(self, control: int = 7) -> None:
        self.control = control
        self.targets: dict[int, FakeTarget] = {}
        self.accounts: dict[str, str] = {}  # user → password
        self.down = False
        self.commands: list[list[str]] = []
        self.fail_next: dict[str, str] = {}  # op → stderr message for the next such command
        # args that a command must all hold → stderr message for the next such command
        self.fail_with: dict[tuple[str, ...], str] = {}
        self.after: list[Callable[[FakeTgtd], None]] = []  # checks run after every command

    def restart(self) -> None:
        """tgtd restarted: everything is gone."""
        self.targets.clear()
        self.accounts.clear()

    async def tgtadm(self, *args: str) -> Result:
        """Run `tgtadm -C <control> --lld iscsi ARGS` on this fake, as another tool would."""
        return await self(["tgtadm", "-C", str(self.control), "--lld", "iscsi", *args], 1.0)

    def mutations(self) -> list[list[str]]:
        return [c for c in self.commands if c[0] == "tgtadm" and "show" not in c]

    async def __call__(self, argv: Sequence[str], time_limit: float) -> Result:
        args = list(argv)
        self.commands.append(args)
        if args[0] == "cp":
            shutil.copyfile(args[-2], args[-1])
            return Result(tuple(args), 0, "", "")
        assert args[:3] == ["tgtadm", "-C", str(self.control)], args
        if self.down:
            return Result(
                tuple(args),
                107,
                "",
                "tgtadm: failed to send request hdr to tgt daemon, Transport endpoint is not connected\n",
            )
        opts = _options(args[3:])
        message = self.fail_next.pop(opts["op"], None)
        for needles in list(self.fail_with):
            if message is None and all(needle in args for needle in needles):
                message = self.fail_with.pop(needles)
        if message is None:
            message = self._apply(opts)
            for check in self.after:
                check(self)
        if message:
            return Result(tuple(args), 22, "", f"tgtadm: {message}\n")
        if opts["op"] != "show":
            return Result(tuple(args), 0, "", "")
        shown = self.render() if opts["mode"] == "target" else self.render_accounts()
        return Result(tuple(args), 0, shown, "")

    def _apply(self, o: dict[str, str]) -> str:
        op, mode = o["op"], o["mode"]
        tid = int(o.get("tid", "0"))
        target = self.targets.get(tid)
        if op == "show":
            return ""
        if mode == "account" and op in ("new", "delete"):
            return self._account(op, o)
        if mode == "target" and op == "new":
            if tid in self.targets or any(t.name == o["targetname"] for t in self.targets.values()):
                return "this target already exists"
            self.targets[tid] = FakeTarget(o["targetname"])
            return ""
        if target is None:
            return "can't find the target"
        if mode == "target" and op == "delete":
            del self.targets[tid]
        elif mode == "target" and op == "bind":
            if o["initiator-name"] in target.acl:
                return "this access control rule already exists"
            target.acl.append(o["initiator-name"])
        elif mode == "target" and op == "unbind":
            if o["initiator-name"] not in target.acl:
                return "this access control rule does not exist"
            target.acl.remove(o["initiator-name"])
        elif mode == "logicalunit":
            return self._lu(op, o, target)
        elif mode == "account":
            return self._binding(op, o, target)
        return ""

    def _account(self, op: str, o: dict[str, str]) -> str:
        user = o["user"]
        if op == "new":
            user = user.split(",")[0]  # tgtadm sends "user=U,password=P": tgtd cuts U at a ','

            if user in self.accounts:
                return "this account already exists"
            self.accounts[user] = o["password"]
            return ""
        if user not in self.accounts:
            return "can't find the account"
        del self.accounts[user]
        for target in self.targets.values():
            target.unbind_incoming(user)
            target.outgoing = None if target.outgoing == user else target.outgoing
        return ""

    def _binding(self, op: str, o: dict[str, str], target: FakeTarget) -> str:
        user = o["user"]
        if user not in self.accounts:
            return "can't find the account"
        outgoing = "outgoing" in o
        if op == "bind" and outgoing:
            if target.outgoing is not None:
                return "this target already has an outgoing account"
            target.outgoing = user
        elif op == "bind":
            return target.bind_incoming(user)
        elif outgoing:
            if target.outgoing != user:
                return "can't find the account"
            target.outgoing = None
        else:
            return target.unbind_incoming(user)
        return ""

    def admits(
        self,
        target_name: str,
        initiator: str,
        chap: tuple[str, str] | None = None,
        mutual: tuple[str, str] | None = None,
    ) -> bool:
        """Would tgtd let `initiator` log in with CHAP `chap` (user, secret), and would an
        initiator that asks the target to prove `mutual` (user, secret) accept it?"""
        target = self.by_name(target_name)
        if target is None or initiator not in target.acl:
            return False
        if target.count and (
            chap is None or not target.checks_chap_of(chap[0]) or self.accounts.get(chap[0]) != chap[1]
        ):
            return False
        return mutual is None or (
            target.outgoing is not None and (target.outgoing, self.accounts[target.outgoing]) == mutual
        )

    def _lu(self, op: str, o: dict[str, str], target: FakeTarget) -> str:
        lun = int(o["lun"])
        if op == "new":
            if "params" in o:
                return "logicalunit mode: option '-P' is not allowed/supported"
            if lun in target.luns:
                return "this logical unit number already exists"
            target.luns[lun] = FakeLu(o["backing-store"])
        elif lun not in target.luns:
            return "can't find the logical unit"
        elif op == "delete":
            del target.luns[lun]
        elif op == "update":
            lu = target.luns[lun]
            for item in o["params"].split(","):
                key, _, value = item.partition("=")
                if key == "scsi_id":
                    lu.scsi_id = value
                elif key == "scsi_sn":
                    lu.scsi_sn = value
                elif key == "thin_provisioning":
                    lu.thin = value == "1"
                else:
                    return "unknown parameter"
        return ""

    def render(self) -> str:
        """`tgtadm --op show --mode target`, laid out as tgt prints it."""
        lines: list[str] = []
        for tid, target in sorted(self.targets.items()):
            lines += [f"Target {tid}: {target.name}", "    System information:", "        Driver: iscsi"]
            lines += ["        State: ready", "    I_T nexus information:", "    LUN information:"]
            lines += _lu_lines(0, FakeLu("None", "IET     00010000", "beaf10"), controller=True)
            for lun, lu in sorted(target.luns.items()):
                lines += _lu_lines(lun, lu)
            lines += ["    Account information:"]
            lines += [f"        {user}" for user in target.incoming]
            lines += [f"        {target.outgoing} (outgoing)"] if target.outgoing is not None else []
            lines += ["    ACL information:"]
            lines += [f"        {name}" for name in target.acl]
        return "\n".join(lines) + "\n"

    def render_accounts(self) -> str:
        """`tgtadm --mode account --op show`: the users, newest first, no passwords (and no
        output at all when there is no account)."""
        if not self.accounts:
            return ""
        return "Account list:\n" + "".join(f"    {user}\n" for user in reversed(self.accounts))

    def lu(self, target_name: str, lun: int) -> FakeLu:
        for target in self.targets.values():
            if target.name == target_name:
                return target.luns[lun]
        raise KeyError(target_name)

    def by_name(self, target_name: str) -> FakeTarget | None:
        return next((t for t in self.targets.values() if t.name == target_name), None)


def _lu_lines(lun: int, lu: FakeLu, controller: bool = False) -> list[str]:
    return [
        f"        LUN: {lun}",
        f"            Type: {'controller' if controller else 'disk'}",
        f"            SCSI ID: {lu.scsi_id}",
        f"            SCSI SN: {lu.scsi_sn}",
        "            Size: 0 MB, Block size: 1" if controller else "            Size: 67 MB, Block size: 512",
        "            Online: Yes",
        f"            Thin-provisioning: {'Yes' if lu.thin else 'No'}",
        f"            Backing store type: {'null' if controller else 'rdwr'}",
        f"            Backing store path: {lu.path}",
        "            Backing store flags: ",
    ]


def _options(args: list[str]) -> dict[str, str]:
    """tgtadm's long options (and -T/-C) as a dict; flags map to ''."""
    aliases = {"-T": "targetname", "-b": "backing-store", "-P": "params"}
    out: dict[str, str] = {}
    i = 0
    while i < len(args):
        arg = args[i]
        key = aliases.get(arg, arg.removeprefix("--"))
        if key in ("force", "outgoing"):
            out[key] = ""
            i += 1
        else:
            out[key] = args[i + 1]
            i += 2
    return out
