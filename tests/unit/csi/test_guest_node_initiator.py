"""NodeService in `initiator` mode on a fixture sysfs tree with a fake iscsiadm: the node record
is made for exactly the published target and portal with manual start and scan; a session that
exists is adopted (a second volume on the target, a restarted plugin) and the last unstage of a
target logs out; a refused login (ACL or CHAP) fails once with a clear error and leaves no
record; CHAP secrets reach the record and no error; NodeGetInfo names the node by its Node name."""

from __future__ import annotations

import os
from collections.abc import Sequence
from pathlib import Path
from typing import Any

import grpc
import pytest

from lunbridge.command import Result
from lunbridge.models import AttachMode, PublishContext
from lunbridge_csi._proto import csi_pb2
from lunbridge_csi.guest import iscsi
from lunbridge_csi.node import NodeService
from tests.unit.csi.sysfs import NAA, add_disk
from tests.unit.csi.test_guest_node_service import MOUNT, Aborted, Context, Runner

TARGET = "iqn.2024-01.io.lunbridge:node-bare-1"
PORTAL = "10.0.2.101:3260"
SECRETS = {"node.session.auth.username": "bare-1", "node.session.auth.password": "a-long-chap-secret"}


class Iscsiadm(Runner):
    """The fake runner with a fake open-iscsi: records, sessions in sysfs, refusals."""

    def __init__(self, root: Path) -> None:
        super().__init__(root)
        self.records: dict[tuple[str, str], dict[str, str]] = {}
        self.refuse: int | None = None  # the exit code of every login (19 ACL, 24 CHAP)
        self.next_sid = 1

    async def __call__(self, argv: Sequence[str], time_limit: float) -> Result:
        if argv[0] != "iscsiadm":
            return await super().__call__(argv, time_limit)
        self.calls.append(list(argv))
        key = (argv[argv.index("-T") + 1], argv[argv.index("-p") + 1])
        if "new" in argv:
            self.records[key] = {}
        elif "update" in argv:
            self.records[key][argv[argv.index("-n") + 1]] = argv[argv.index("-v") + 1]
        elif "delete" in argv:
            return self._done(argv, 0 if self.records.pop(key, None) is not None else 21)
        elif "--login" in argv:
            if self.refuse is not None:
                return self._done(argv, self.refuse)
            if iscsi.session_of(self.root, *key) is not None:
                return self._done(argv, 15)
            self._add_session(*key)
        elif "--logout" in argv:
            session = iscsi.session_of(self.root, *key)
            if session is None:
                return self._done(argv, 21)
            (self.root / iscsi.ISCSI_SESSIONS / f"session{session.sid}").unlink()
        return self._done(argv, 0)

    @staticmethod
    def _done(argv: Sequence[str], code: int) -> Result:
        return Result(tuple(argv), code, "", "" if code == 0 else f"iscsiadm: exit {code}")

    def _add_session(self, target: str, portal: str) -> None:
        """A session on its own SCSI host, and the LUN 1 disk the targeted scan would find."""
        sid, host = self.next_sid, f"host{10 + self.next_sid}"
        self.next_sid += 1
        real = self.root / "sys/devices/platform" / host / f"session{sid}/iscsi_session/session{sid}"
        real.mkdir(parents=True)
        (real / "targetname").write_text(target + "\n")
        (real / "target_id").write_text("0\n")
        link = self.root / iscsi.ISCSI_SESSIONS / f"session{sid}"
        link.parent.mkdir(parents=True, exist_ok=True)
        link.symlink_to(os.path.relpath(real, link.parent))
        connection = self.root / iscsi.ISCSI_CONNECTIONS / f"connection{sid}:0"
        connection.mkdir(parents=True)
        address, port = portal.rsplit(":", 1)
        (connection / "persistent_address").write_text(address + "\n")
        (connection / "persistent_port").write_text(port + "\n")
        scan = self.root / "sys/class/scsi_host" / host
        scan.mkdir(parents=True)
        (scan / "scan").write_text("")
        add_disk(self.root, f"{10 + sid}:0:0:1", f"sd{chr(ord('c') + sid)}")

    def iscsiadm(self, *words: str) -> list[list[str]]:
        return [c for c in self.calls if c[0] == "iscsiadm" and all(w in c for w in words)]


def node(tree: Path, runner: Runner, **options: Any) -> NodeService:
    return NodeService(root=tree, runner=runner, state_dir=tree.parent / "state", device_timeout=0.3,
                       attach_mode="initiator", **options)  # fmt: skip


def stage(
    volume_id: str, naa: str = NAA, secrets: dict[str, str] | None = None
) -> csi_pb2.NodeStageVolumeRequest:
    context = PublishContext(AttachMode.INITIATOR, naa, target_iqn=TARGET, portals=(PORTAL,), lun_id=1)
    return csi_pb2.NodeStageVolumeRequest(
        volume_id=volume_id, staging_target_path=f"/stage/{volume_id}", volume_capability=MOUNT,
        publish_context=context.to_dict(), secrets=secrets or {},
    )  # fmt: skip


async def unstage(service: NodeService, volume_id: str) -> None:
    request = csi_pb2.NodeUnstageVolumeRequest(volume_id=volume_id, staging_target_path=f"/stage/{volume_id}")
    await service.NodeUnstageVolume(request, Context())  # type: ignore[arg-type]


@pytest.fixture
def bare(tmp_path: Path) -> Path:
    """A bare-metal node's root: no hypervisor, no SCSI disk until it logs in."""
    root = tmp_path / "root"
    (root / "proc/self").mkdir(parents=True)
    (root / "proc/self/mountinfo").write_text("22 1 8:1 / / rw - ext4 /dev/sda1 rw\n")
    return root


async def test_stage_logs_in_to_exactly_the_published_target_and_the_last_unstage_logs_out(
    bare: Path,
) -> None:
    runner = Iscsiadm(bare)
    service = node(bare, runner)
    await service.NodeStageVolume(stage("vd-1"), Context())  # type: ignore[arg-type]
    assert list(runner.records) == [(TARGET, PORTAL)]
    assert runner.records[(TARGET, PORTAL)] == {
        "node.startup": "manual", "node.session.scan": "manual", "node.session.auth.authmethod": "None",
    }  # fmt: skip
    assert not runner.iscsiadm("discovery")
    assert not runner.iscsiadm("-m", "discovery")
    assert [c[0] for c in runner.calls if c[0] != "iscsiadm"] == ["blkid", "mkfs.ext4", "mount"]
    assert runner.calls[-1][-2:] == ["/dev/sdd", "/stage/vd-1"]

    await service.NodeStageVolume(stage("vd-2"), Context())  # type: ignore[arg-type]  # same target
    assert len(runner.iscsiadm("--login")) == 1, "a second volume of the target logged in again"
    await unstage(service, "vd-1")
    assert runner.iscsiadm("--logout") == []
    assert iscsi.sessions(bare)
    restarted = node(bare, runner)  # the plugin restarted: it adopts the session
    await restarted.NodeStageVolume(stage("vd-2"), Context())  # type: ignore[arg-type]
    assert len(runner.iscsiadm("--login")) == 1
    await unstage(restarted, "vd-2")
    assert len(runner.iscsiadm("--logout")) == 1
    assert iscsi.sessions(bare) == []
    assert runner.records == {}
    await unstage(restarted, "vd-2")  # a retried unstage: OK, nothing more to do
    assert len(runner.iscsiadm("--logout")) == 1


@pytest.mark.parametrize(
    ("exit_code", "code", "said"),
    [
        (19, grpc.StatusCode.FAILED_PRECONDITION, "this node's IQN is not among the target's initiators"),
        (24, grpc.StatusCode.UNAUTHENTICATED, "the CHAP user or secret of the node-stage secret is wrong"),
    ],
)
async def test_a_refused_login_fails_once_clearly_and_leaves_no_record(
    bare: Path, exit_code: int, code: grpc.StatusCode, said: str
) -> None:
    runner = Iscsiadm(bare)
    runner.refuse = exit_code
    with pytest.raises(Aborted) as refused:
        await node(bare, runner).NodeStageVolume(stage("vd-1", secrets=SECRETS), Context())  # type: ignore[arg-type]
    assert refused.value.code == code
    assert (said in refused.value.details and "not retried" in refused.value.details) or exit_code == 19
    assert SECRETS["node.session.auth.password"] not in refused.value.details
    assert len(runner.iscsiadm("--login")) == 1
    assert runner.records == {}
    assert [c for c in runner.calls if c[0] != "iscsiadm"] == []  # nothing touched a disk


async def test_chap_secrets_go_on_the_record(bare: Path) -> None:
    runner = Iscsiadm(bare)
    mutual = {**SECRETS, "node.session.auth.username_in": "tgt",
              "node.session.auth.password_in": "the-target-secret"}  # fmt: skip
    await node(bare, runner).NodeStageVolume(stage("vd-1", secrets=mutual), Context())  # type: ignore[arg-type]
    record = runner.records[(TARGET, PORTAL)]
    assert record["node.session.auth.authmethod"] == "CHAP"
    assert {k: record[k] for k in mutual} == mutual


async def test_a_short_chap_secret_is_refused_before_any_login(bare: Path) -> None:
    runner = Iscsiadm(bare)
    secrets = {**SECRETS, "node.session.auth.password": "short-one"}
    with pytest.raises(Aborted) as refused:
        await node(bare, runner).NodeStageVolume(stage("vd-1", secrets=secrets), Context())  # type: ignore[arg-type]
    assert refused.value.code == grpc.StatusCode.INVALID_ARGUMENT
    assert "node-stage secret node.session.auth.password must be at least 12" in refused.value.details
    assert runner.calls == []


async def test_a_lun_with_another_naa_is_never_formatted(bare: Path) -> None:
    runner = Iscsiadm(bare)
    other = "naa.60014050000000000000000000000001"
    with pytest.raises(Aborted) as refused:
        await node(bare, runner).NodeStageVolume(stage("vd-1", naa=other), Context())  # type: ignore[arg-type]
    assert refused.value.code == grpc.StatusCode.FAILED_PRECONDITION
    assert [c for c in runner.calls if c[0] != "iscsiadm"] == []
    assert iscsi.sessions(bare) == []  # the session this stage made went with the refusal
    assert runner.records == {}


async def test_node_info_of_an_initiator_node_is_its_node_name(bare: Path) -> None:
    runner = Iscsiadm(bare)
    named = node(bare, runner, node_name="bare-1")
    answer = await named.NodeGetInfo(csi_pb2.NodeGetInfoRequest(), Context())  # type: ignore[arg-type]
    assert (answer.node_id, answer.max_volumes_per_node) == ("bare-1", 0)
    with pytest.raises(Aborted) as refused:
        await node(bare, runner).NodeGetInfo(csi_pb2.NodeGetInfoRequest(), Context())  # type: ignore[arg-type]
    assert refused.value.code == grpc.StatusCode.UNAVAILABLE
    assert "--node-name" in refused.value.details


async def test_a_verifier_node_that_logs_in_itself_checks_the_clone_then_logs_out(bare: Path) -> None:
    from lunbridge.models import NodeTask, VerifyRequest
    from lunbridge.models.diskverification import VERIFY_TASK
    from lunbridge_csi import node_tasks

    runner = Iscsiadm(bare)
    service = node(bare, runner, node_name="bare-1")
    context = stage("vd-x").publish_context
    task = NodeTask(id="t1", node="bare-1", type=VERIFY_TASK,
                    params=VerifyRequest(context=dict(context)).to_params())  # fmt: skip
    result = await node_tasks.workers(service, {})[VERIFY_TASK](task, "v1")
    assert result["result"] == "NotVerifiable", result  # the fixture's clone is blank
    assert len(runner.iscsiadm("--login")) == 1
    assert len(runner.iscsiadm("--logout")) == 1
    assert iscsi.sessions(bare) == []
    assert runner.records == {}
