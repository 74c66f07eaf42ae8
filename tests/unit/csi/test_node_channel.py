"""The node channel: a task addressed to this node and not answered runs once, its report goes
back as Running then Done (with the worker's result or its error); other nodes' tasks and
answered tasks are left alone; a report that could not be written is sent again without
running the task again."""

from __future__ import annotations

import asyncio
import re
from collections.abc import AsyncIterator
from pathlib import Path
from typing import Any

import pytest

from lunbridge.errors import InvalidArgument, Unavailable
from lunbridge.models import NodeTask, node_task_label
from lunbridge_csi.__main__ import main
from lunbridge_csi.channel import NodeChannel
from lunbridge_csi.server import Settings, SettingsError, serve

PLURAL = "diskverifications"


class FakeApi:
    def __init__(self) -> None:
        self.reports: list[tuple[str, dict[str, Any]]] = []
        self.refuse_reports = 0
        self.published: list[tuple[str, dict[str, Any]]] = []

    async def list_objects(self, plural: str, label_selector: str) -> tuple[list[dict[str, Any]], str]:
        return [], "1"

    async def watch_objects(
        self, plural: str, label_selector: str, resource_version: str
    ) -> AsyncIterator[dict[str, Any]]:
        await asyncio.Event().wait()
        yield {}

    async def publish_node(self, name: str, spec: dict[str, Any]) -> None:
        self.published.append((name, spec))

    async def patch_report(self, plural: str, name: str, report: dict[str, Any]) -> None:
        if report["state"] == "Done" and self.refuse_reports:
            self.refuse_reports -= 1
            raise Unavailable("the API server is away")
        self.reports.append((name, report))


def obj(name: str, node: str, task_id: str = "t1", report: dict[str, Any] | None = None) -> dict[str, Any]:
    task = NodeTask(id=task_id, node=node, type="Echo", params={"word": "hi"}, timeout_seconds=5)
    status: dict[str, Any] = {"nodeTask": task.to_dict()}
    if report is not None:
        status["nodeReport"] = report
    return {"metadata": {"name": name}, "status": status}


def channel(api: FakeApi, runs: list[str]) -> NodeChannel:
    async def echo(task: NodeTask, name: str) -> dict[str, str]:
        runs.append(name)
        if task.params["word"] == "fail":
            raise InvalidArgument("spec.check 'x' is not configured on this node")
        return {"said": task.params["word"]}

    return NodeChannel(api, "node-a", {"Echo": echo}, (PLURAL,))


async def settle(chan: NodeChannel) -> None:
    while chan._running:
        await asyncio.gather(*chan._running.values())


async def test_a_task_for_this_node_runs_once_and_reports_running_then_done() -> None:
    api, runs = FakeApi(), list[str]()
    chan = channel(api, runs)
    chan.consider(PLURAL, obj("v1", "node-a"))
    chan.consider(PLURAL, obj("v1", "node-a"))  # seen again while it runs
    await settle(chan)
    assert runs == ["v1"]
    assert [r["state"] for _, r in api.reports] == ["Running", "Done"]
    assert api.reports[-1][1]["result"] == {"said": "hi"}
    assert api.reports[-1][1]["id"] == "t1"
    assert api.reports[-1][1]["error"] is None


async def test_other_nodes_and_answered_tasks_are_left_alone() -> None:
    api, runs = FakeApi(), list[str]()
    chan = channel(api, runs)
    chan.consider(PLURAL, obj("v1", "node-b"))
    chan.consider(PLURAL, obj("v2", "node-a", report={"id": "t1", "node": "node-a", "state": "Done"}))
    await settle(chan)
    assert runs == []
    assert api.reports == []


async def test_a_report_of_an_earlier_task_does_not_answer_a_new_one() -> None:
    api, runs = FakeApi(), list[str]()
    chan = channel(api, runs)
    chan.consider(
        PLURAL, obj("v1", "node-a", task_id="t2", report={"id": "t1", "node": "node-a", "state": "Done"})
    )
    await settle(chan)
    assert runs == ["v1"]


async def test_a_worker_error_is_reported_as_the_tasks_error() -> None:
    api, runs = FakeApi(), list[str]()
    chan = channel(api, runs)
    item = obj("v1", "node-a")
    item["status"]["nodeTask"]["params"]["word"] = "fail"
    chan.consider(PLURAL, item)
    await settle(chan)
    done = api.reports[-1][1]
    assert done["state"] == "Done"
    assert "is not configured on this node" in done["error"]


async def test_an_unwritten_report_is_sent_again_without_running_the_task_again() -> None:
    api, runs = FakeApi(), list[str]()
    api.refuse_reports = 1
    chan = channel(api, runs)
    chan.consider(PLURAL, obj("v1", "node-a"))
    await settle(chan)
    assert [r["state"] for _, r in api.reports] == ["Running"]
    chan.consider(PLURAL, obj("v1", "node-a"))  # the object seen again (watch or list)
    await settle(chan)
    assert runs == ["v1"]
    assert api.reports[-1][1]["state"] == "Done"


async def test_a_task_type_without_a_worker_is_answered_with_an_error() -> None:
    api = FakeApi()
    chan = NodeChannel(api, "node-a", {}, (PLURAL,))
    chan.consider(PLURAL, obj("v1", "node-a"))
    await settle(chan)
    assert "no worker for task type 'Echo'" in api.reports[-1][1]["error"]


def test_long_node_names_get_a_valid_label_value() -> None:
    assert node_task_label("worker-1") == "worker-1"
    long = node_task_label("a" * 70 + ".example.com")
    assert long.startswith("h-")
    assert len(long) <= 63


async def test_the_node_publishes_itself_once_and_again_only_when_it_changed() -> None:
    api = FakeApi()
    spec = {"mode": "initiator", "iqn": "iqn.2004-10.com.ubuntu:01:9c3a"}
    chan = NodeChannel(api, "node-a", {}, (PLURAL,), publication=lambda: dict(spec))
    assert await chan.publish_once()
    assert not await chan.publish_once()  # nothing changed: nothing written
    spec["iqn"] = "iqn.2004-10.com.ubuntu:01:ffff"
    assert await chan.publish_once()
    assert [(name, s["iqn"]) for name, s in api.published] == [
        ("node-a", "iqn.2004-10.com.ubuntu:01:9c3a"),
        ("node-a", "iqn.2004-10.com.ubuntu:01:ffff"),
    ]


@pytest.mark.parametrize(
    ("option", "said"),
    [
        ({"verify_checks": ("fsck-only",)}, "--verify-check 'fsck-only' is not NAME=COMMAND"),
        ({"verify_checks": ("app=run 'unclosed",)}, "--verify-check app"),
        ({"attach_mode": "iscsi"}, "--attach-mode 'iscsi' is not one of auto, hypervisor, initiator"),
    ],
)
def test_a_bad_node_option_refuses_the_start_and_names_the_option(
    option: dict[str, Any], said: str, tmp_path: Path
) -> None:
    """Before: the node channel died in the background and the plugin served on without it."""
    endpoint = f"unix://{tmp_path}/csi.sock"
    settings = Settings(mode="node", endpoint=endpoint, node_name="n1", **option)
    with pytest.raises(SettingsError, match=re.escape(said)):
        asyncio.run(serve(settings))
    assert not (tmp_path / "csi.sock").exists()  # nothing was served


def test_the_command_line_says_a_bad_attach_mode_from_the_environment(
    monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str], tmp_path: Path
) -> None:
    monkeypatch.setenv("LUNBRIDGE_ATTACH_MODE", "bare-metal")
    code = main(["--mode", "node", "--endpoint", f"unix://{tmp_path}/csi.sock"])
    assert code == 2
    assert "--attach-mode 'bare-metal' is not one of" in capsys.readouterr().err


@pytest.mark.parametrize(
    ("variable", "value", "said"),
    [
        ("LUNBRIDGE_CSI_MAX_VOLUMES", "abc", "--max-volumes: 'abc' (the flag, or LUNBRIDGE_CSI_MAX_VOLUMES)"),
        ("LUNBRIDGE_CSI_KVM_MAX_VOLUMES", "-3", "LUNBRIDGE_CSI_KVM_MAX_VOLUMES) must not be negative"),
        (
            "LUNBRIDGE_CSI_TIMEOUT",
            "soon",
            "--timeout: 'soon' (the flag, or LUNBRIDGE_CSI_TIMEOUT) is not a number",
        ),
        ("LUNBRIDGE_CSI_CAPACITY_BYTES", "1G", "LUNBRIDGE_CSI_CAPACITY_BYTES) is not a whole number"),
        ("LUNBRIDGE_CSI_MODE", "bogus", "--mode: 'bogus' (the flag, or LUNBRIDGE_CSI_MODE) is not one of"),
        ("LUNBRIDGE_LOG_LEVEL", "loud", "--log-level: 'loud' (the flag, or LUNBRIDGE_LOG_LEVEL)"),
    ],
)
def test_a_bad_setting_from_the_environment_is_refused_naming_the_variable(
    variable: str, value: str, said: str, monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str],
    tmp_path: Path,
) -> None:  # fmt: skip
    """Before: a traceback (numbers), or a plugin that served Identity only (a bogus mode)."""
    monkeypatch.setenv(variable, value)
    with pytest.raises(SystemExit) as stopped:
        main(["--endpoint", f"unix://{tmp_path}/csi.sock"])
    assert stopped.value.code == 2
    assert said in capsys.readouterr().err
    assert not (tmp_path / "csi.sock").exists()
