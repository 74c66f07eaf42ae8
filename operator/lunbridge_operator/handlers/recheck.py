"""The re-check of VirtualDisks as one background pass, instead of a kopf timer per disk.

A timer per disk woke kopf 100 times a second at 1,000 disks (each a handler run and a log
line), and each due disk ran a full reconcile with its own reads of every layer. The pass wakes
every 10 s and looks at the VirtualDisk index (memory, fed by kopf's own watch):
- a disk whose status describes an older generation than its spec, unchanged for a tick, is
  reconciled (kopf runs no handler for a change that takes the spec back to what it last
  handled successfully: a nodeName set, never attached, and cleared again);
- every --resync-seconds, every Ready disk is judged against one listing of each layer
  (`reconcile.recheck`), and only the ones that drifted are reconciled; also at once when the
  hypervisor says a VM moved or a cluster gained or lost a host (vSphere's property collector),
  so status follows a vMotion, and a host that joins gets its initiators in the cluster's igroup
  and the LUNs revealed, without waiting for the period.
At most 8 reconciles run at once, each under the disk's lock like any handler.

kopf pauses its handlers while another replica with the same or a higher priority is alive in
the ClusterKopfPeering; the pass follows kopf's rule (read from that object before it acts),
so a standby replica reconciles nothing.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import time
from collections.abc import Mapping
from typing import Any

import kopf

from lunbridge.errors import LunbridgeError
from lunbridge.hypervisor.base import PlacementFollower
from lunbridge_operator import memory
from lunbridge_operator.handlers.common import services
from lunbridge_operator.handlers.virtualdisk import Seen, disk_of, reconcile_disk
from lunbridge_operator.reconcile import health, orphans, recheck
from lunbridge_operator.reconcile.health import Drift
from lunbridge_operator.sweep import SweepKube

log = logging.getLogger(__name__)
TICK = 10.0
AT_ONCE = 8


def start(memo: Any, index: kopf.Index[str, Seen]) -> None:
    """Run the pass in the background until `stop`; a VM that moves or a cluster that gains or
    loses a host (where the hypervisor tells: `PlacementFollower`) starts a full pass at once."""
    memo.peering = SweepKube()  # one API client for every tick's look at the peering
    memo.placement_changed = changed = asyncio.Event()
    hypervisor = memo.services.hypervisor
    if isinstance(hypervisor, PlacementFollower):
        loop = asyncio.get_running_loop()

        def tell() -> None:  # from the hypervisor's thread
            loop.call_soon_threadsafe(changed.set)

        hypervisor.follow_placement(tell)
    memo.rechecker = asyncio.create_task(recheck_forever(memo, index), name="re-check of VirtualDisks")


async def stop(memo: Any) -> None:
    task: asyncio.Task[None] | None = getattr(memo, "rechecker", None)
    if task is not None:
        task.cancel()
        with contextlib.suppress(asyncio.CancelledError):
            await task


async def active(memo: Any) -> bool:
    """Whether kopf lets this replica work: standalone, or no other live replica in the
    ClusterKopfPeering has the same or a higher priority (kopf's rule, `kopf/_core/engines/
    peering.py`). A peering that cannot be read: not active, this time."""
    config = memo.config
    if config.standalone:
        return True
    try:
        peers = await memo.peering.live_peers(config.peering)
    except LunbridgeError as exc:
        log.warning("cannot read ClusterKopfPeering %s, so no re-check this time: %s", config.peering, exc)
        return False
    return not any(
        priority >= config.priority for identity, priority in peers.items() if identity != memo.identity
    )


async def recheck_forever(memo: Any, index: kopf.Index[str, Seen]) -> None:
    passed = time.monotonic()
    changed: asyncio.Event = memo.placement_changed
    while True:
        with contextlib.suppress(TimeoutError):
            await asyncio.wait_for(changed.wait(), TICK)
        woken = changed.is_set()
        changed.clear()
        if not await active(memo):
            continue
        due = woken or time.monotonic() - passed >= memo.config.resync_seconds
        if woken:
            log.info("a VM moved, or a cluster gained or lost a host: every Ready disk is checked now")
            # and every InitiatorGroup at its timer's next tick (handlers.initiatorgroup): a host
            # that left its cluster leaves the cluster's igroup
            for key in [key for key in memo.checked if key[0] == "igroup"]:
                del memo.checked[key]
        if due:
            passed = time.monotonic()
        try:
            await once(memo, index, full=due)
        except Exception:  # a bug must not end the re-checks for good
            log.exception("the re-check of VirtualDisks failed; it runs again in %.0fs", TICK)


async def once(memo: Any, index: Mapping[str, Any], *, full: bool) -> dict[str, Drift]:
    """One tick: the stale disks, and with `full` the pass over every Ready disk; reconciles
    them (at most AT_ONCE at a time, a broken link recorded first: `reconcile.health`) and
    returns name -> why."""
    now = time.monotonic()
    latest: dict[str, Seen] = {name: max(store, key=lambda s: s.at) for name, store in index.items() if store}
    live = {name: seen for name, seen in latest.items() if not seen.deleting}
    work = {
        name: Drift(health.SPEC_AHEAD, "its status describes an older generation than its spec")
        for name, seen in live.items()
        if now - seen.at >= TICK and seen.lags
    }
    if full:
        disks = [d for s in live.values() if recheck.settled(d := disk_of(s.body))]
        try:
            drifted = await recheck.judge(services(memo), disks, await orphans.look(services(memo)))
        except LunbridgeError as exc:
            log.warning("the re-check of Ready disks could not read a layer: %s", exc)
            drifted = {}
        for name, why in drifted.items():
            work.setdefault(name, why)
        memory.give_back()
    limit = asyncio.Semaphore(AT_ONCE)

    async def reconcile(name: str, why: Drift) -> None:
        body = live[name].body
        level = logging.DEBUG if why == recheck.ROUTINE else logging.INFO
        log.log(level, "VirtualDisk %s: %s; reconciling it", name, why)
        try:
            await reconcile_disk(disk_of(body), body, memo, 0, drift=why)
        except (kopf.TemporaryError, kopf.PermanentError) as exc:
            log.warning("VirtualDisk %s: %s", name, exc)
        except Exception:  # one disk's bug must not stop the others' re-check
            log.exception("VirtualDisk %s: the re-check's reconcile failed", name)

    async def in_kopf_context(name: str, why: Drift) -> None:
        async with limit:
            posting = getattr(memo, "kopf_context", {}).get("posting")
            if posting is None:  # (tests: the caller set up kopf's posting)
                await reconcile(name, why)
            else:  # kopf posts an object's Events only from its processing context
                await asyncio.create_task(reconcile(name, why), context=posting.copy())

    await asyncio.gather(*(in_kopf_context(name, why) for name, why in work.items()))
    return work
