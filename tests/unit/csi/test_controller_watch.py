"""The controller's waits on the fakes are watches (issue 18, P5): CreateVolume and
ControllerPublishVolume register with the shared VirtualDisk feed before their create or patch
and judge the versions after it, reading nothing while the operator works; without the feed (not
running, or a gap in it) they watch the disk alone from the version their write returned, a
watch that drops is resumed with one read, and they answer as soon as the operator's status
says so."""

from __future__ import annotations

import asyncio
from collections.abc import Awaitable, Callable
from typing import Any

import pytest

from lunbridge_csi.controller import ControllerService
from lunbridge_csi.volume_rules import Timeouts
from tests.fakes import Lab
from tests.unit.csi.test_controller_requests import call, create, publish
from tests.unit.csi.test_errors import Aborted


async def until(condition: Callable[[], bool]) -> None:
    for _ in range(2000):
        if condition():
            return
        await asyncio.sleep(0.001)
    raise AssertionError("the condition never held")


def csi_reads(lab: Lab) -> list[tuple[object, ...]]:
    """The CSI controller's reads of VirtualDisks (the operator's `get` has two arguments)."""
    return [args for args in lab.kube.called("get") if len(args) == 1]


async def held_back(lab: Lab, seconds: float, then: Callable[[], Awaitable[None]] | None = None) -> None:
    """The operator held back `seconds` (and `then` done meanwhile), then let go."""
    await asyncio.sleep(seconds)
    if then is not None:
        await then()
    await lab.operator.start()


async def test_create_volume_waits_on_the_feed_it_joined_before_its_create_and_reads_nothing(
    service: ControllerService, lab: Lab
) -> None:
    lab.operator.stop()
    creating = asyncio.create_task(call(service.CreateVolume, create()))
    await until(lambda: bool(lab.kube.called("create")))
    await asyncio.sleep(0.3)  # a re-read every 250 ms, as before, would have read again by now
    calls = [c.method for c in lab.kube.calls]
    assert calls.index("following") < calls.index("create")
    assert lab.kube.called("changes") == []  # no watch of its own
    await lab.operator.start()
    assert (await creating).volume.volume_id == "pvc-1"
    assert csi_reads(lab) == []
    assert lab.kube.called("changes") == []


async def create_on_a_watch_of_its_own(service: ControllerService, lab: Lab) -> asyncio.Task[Any]:
    """A CreateVolume without the feed, held (the operator stopped) once its watch is open."""
    lab.kube.feed_live = False
    lab.operator.stop()
    creating = asyncio.create_task(call(service.CreateVolume, create()))
    await until(lambda: bool(lab.kube.called("changes")))
    return creating


async def test_without_the_feed_create_volume_watches_from_what_its_create_returned(
    service: ControllerService, lab: Lab
) -> None:
    creating = await create_on_a_watch_of_its_own(service, lab)
    assert csi_reads(lab) == []  # what the create returned is the first version
    [(plural, name, since)] = lab.kube.called("changes")
    assert (plural, name) == ("virtualdisks", "pvc-1")
    created = next(v for (p, n, v, _) in lab.kube.history if (p, n) == (plural, name))
    assert since == str(created)
    await lab.operator.start()
    assert (await creating).volume.volume_id == "pvc-1"
    assert csi_reads(lab) == []


async def test_a_gap_in_the_feed_is_resumed_by_one_read_and_a_watch_of_the_disk_alone(
    service: ControllerService, lab: Lab
) -> None:
    lab.operator.stop()
    creating = asyncio.create_task(call(service.CreateVolume, create()))
    await until(lambda: bool(lab.kube.called("create")))
    await asyncio.sleep(0.01)
    lab.kube.feed_gap()
    await until(lambda: bool(lab.kube.called("changes")))
    assert csi_reads(lab) == [("pvc-1",)]
    await lab.operator.start()
    assert (await creating).volume.volume_id == "pvc-1"


async def test_publish_waits_on_the_feed_and_answers_with_the_attachment(
    service: ControllerService, lab: Lab
) -> None:
    await call(service.CreateVolume, create())
    lab.operator.stop()
    before = len(csi_reads(lab))
    publishing = asyncio.create_task(call(service.ControllerPublishVolume, publish(lab, "node-a")))
    await until(lambda: bool(lab.kube.called("patch_spec")))
    await held_back(lab, 0.05)
    published = await publishing
    assert published.publish_context["guestAddress"] == str(lab.rdms("node-a")[0].guest_address)
    assert len(csi_reads(lab)) == before + 1  # the one read at the start of the call
    assert lab.kube.called("changes") == []


async def test_without_the_feed_publish_watches_from_its_patch(service: ControllerService, lab: Lab) -> None:
    await call(service.CreateVolume, create())
    lab.kube.feed_live = False
    lab.operator.stop()
    publishing = asyncio.create_task(call(service.ControllerPublishVolume, publish(lab, "node-a")))
    await until(lambda: len(lab.kube.called("changes")) == 1)
    patched = lab.kube.disks["pvc-1"]["metadata"]["resourceVersion"]
    assert lab.kube.called("changes")[-1] == ("virtualdisks", "pvc-1", patched)
    await held_back(lab, 0.05)
    published = await publishing
    assert published.publish_context["guestAddress"] == str(lab.rdms("node-a")[0].guest_address)


async def test_a_dropped_watch_is_resumed_by_one_read_and_a_watch_from_it(
    service: ControllerService, lab: Lab
) -> None:
    creating = await create_on_a_watch_of_its_own(service, lab)
    lab.kube.drop_watches()
    await until(lambda: len(lab.kube.called("changes")) == 2)
    assert csi_reads(lab) == [("pvc-1",)]  # the read that resumes
    assert lab.kube.called("changes")[1][2] == lab.kube.disks["pvc-1"]["metadata"]["resourceVersion"]
    await lab.operator.start()
    assert (await creating).volume.volume_id == "pvc-1"


async def test_a_watch_that_keeps_dropping_still_ends_at_the_bound(lab: Lab) -> None:
    service = ControllerService(lab.kube, Timeouts(provision=0.4))
    lab.kube.feed_live = False
    lab.operator.stop()
    creating = asyncio.create_task(call(service.CreateVolume, create()))

    async def drop() -> None:
        while not creating.done():
            lab.kube.drop_watches()
            await asyncio.sleep(0.001)

    dropping = asyncio.create_task(drop())
    started = asyncio.get_running_loop().time()
    with pytest.raises(Aborted, match="not provisioned within 0s"):
        await creating
    dropping.cancel()
    assert asyncio.get_running_loop().time() - started < 2
    assert len(csi_reads(lab)) <= 8  # resumed with pauses, not in a loop
