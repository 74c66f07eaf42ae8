"""A fake tgtd behind the backend's command runner: it answers tgtadm command lines the way
tgt 1.0.85 does (same exit codes, same messages, same `--op show` layout), so the backend's
argument building, parsing and restore logic can be tested without a daemon."""

from __future__ import annotations

import shutil
from collections.abc import Sequence
from dataclasses import dataclass, field

from lunbridge.command import Result


@dataclass
class FakeLu:
    path: str
    scsi_id: str = ""
    scsi_sn: str = ""
    thin: bool = False


@dataclass
class FakeTarget:
    name: str
    luns: dict[int, FakeLu] = field(default_factory=dict)
    acl: list[str] = field(default_factory=list)


class FakeTgtd:
    """State of one fake tgtd; call it as a `Runner`."""

    def __init__(self, control: int = 7) -> None:
        self.control = control
        self.targets: dict[int, FakeTarget] = {}
        self.down = False
        self.commands: list[list[str]] = []
        self.fail_next: dict[str, str] = {}  # op → stderr message for the next such command

    def restart(self) -> None:
        """tgtd restarted: everything is gone."""
        self.targets.clear()

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
        if message is None:
            message = self._apply(opts)
        if message:
            return Result(tuple(args), 22, "", f"tgtadm: {message}\n")
        return Result(tuple(args), 0, self.render() if opts["op"] == "show" else "", "")

    def _apply(self, o: dict[str, str]) -> str:
        op, mode = o["op"], o["mode"]
        tid = int(o.get("tid", "0"))
        target = self.targets.get(tid)
        if op == "show":
            return ""
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
        return ""

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
            lines += ["    Account information:", "    ACL information:"]
            lines += [f"        {name}" for name in target.acl]
        return "\n".join(lines) + "\n"

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
        if key == "force":
            out[key] = ""
            i += 1
        else:
            out[key] = args[i + 1]
            i += 2
    return out
