"""Operator start-up and shut-down: kopf settings, the connections to the hypervisor and the
storage server, the metrics endpoint, and the periodic orphan sweep (reports only)."""

from __future__ import annotations

import asyncio
import contextlib
import logging
from typing import Any

import kopf

from lunbridge.api import FINALIZER
from lunbridge.concurrency import KeyedLocks
from lunbridge.hypervisor import libvirt
from lunbridge.hypervisor.base import Hypervisor
from lunbridge.hypervisor.router import Router
from lunbridge.hypervisor.vsphere import VSphere
from lunbridge.storage.factory import Backends
from lunbridge_operator import metrics
from lunbridge_operator.config import OperatorConfig
from lunbridge_operator.handlers import recheck
from lunbridge_operator.handlers.common import crash_after, first_in, scale_retries
from lunbridge_operator.kube import Kube
from lunbridge_operator.reconcile.orphans import Reporter, sweep_forever
from lunbridge_operator.reconcile.services import Services
from lunbridge_operator.sweep import SweepKube


async def connect(config: OperatorConfig) -> Services:
    """Log in to the hypervisors and reach every storage backend (each raises a clear domain
    error if it cannot)."""
    layers: dict[str, Hypervisor] = {}
    try:
        if config.vsphere is not None:
            layers["vsphere"] = await VSphere.connect(config.vsphere)
        if config.libvirt is not None:
            layers["libvirt"] = await libvirt.Libvirt.connect(config.libvirt)
    except BaseException:
        for layer in layers.values():
            await layer.close()
        raise
    hypervisor = Router(layers)
    portals: dict[str, str] = {}
    try:
        backends = Backends.from_configs(config.backends)
    except BaseException:
        await hypervisor.close()
        raise
    try:
        for name, backend in backends:
            await backend.pools()
            found = await backend.portals()
            if found:
                portals[name] = found[0].address
    except BaseException:
        await hypervisor.close()
        await backends.close()
        raise
    return Services(
        hypervisor=hypervisor,
        backends=backends,
        kube=Kube(),
        transport=config.transport,
        default_scope=config.default_scope,
        portals=portals,
        resync_seconds=config.resync_seconds,
        after_step=crash_after,
    )


# At most `--disk-slots` (256) VirtualDisk reconciles and teardowns run at once
# (`common.disk_slot`): a burst (1,000 disks applied together, or resumed after a restart)
# waits for a slot instead of running as 1,000 reconciles whose temporaries fragment the heap
# for good (RSS at rest after such a burst: see `make bench`, scale). Most of a reconcile
# waits on a per-VM or per-host step (an RDM attach, a rescan) while the disks of other VMs
# could run theirs: 200 disks over 10 VMs took 44.8 s with 64 at once and 24.3 s with 256
# (`make bench`, operator (b), on 2 cores). Not kopf's worker limit: kopf holds a worker per
# object until every index has seen every object listed at start, so with more objects than
# workers (1,000 disks at a restart) it never starts.


@kopf.on.startup()
async def started(
    *,
    settings: kopf.OperatorSettings,
    memo: Any,
    logger: logging.Logger | logging.LoggerAdapter[Any],
    **kwargs: Any,  # kopf's indices among them
) -> None:
    config: OperatorConfig = memo.config
    settings.persistence.finalizer = FINALIZER
    # kopf's own progress lines ("Handler ... succeeded", "Creation is processed") stay in
    # the log: as Events they were two API writes per disk that said nothing the operator's
    # own Events and conditions do not (its failures, WARNING and up, are still posted)
    settings.posting.level = logging.WARNING
    settings.watching.server_timeout = 300
    memo.disk_slots = asyncio.Semaphore(config.disk_slots)
    scale_retries(config.retry_scale)
    memo.locks = KeyedLocks[tuple[str, str]]()
    memo.checked = {}
    memo.kopf_context = {}  # filled by the VirtualDisk index (handlers.virtualdisk)
    memo.services = await connect(config)
    memo.services.known_igroup = first_in(kwargs["initiator_groups"])
    memo.services.known_provider_id = first_in(kwargs["node_provider_ids"])
    memo.services.known_node_mode = first_in(kwargs["lunbridge_node_modes"])
    metrics.serve(config.metrics_port)
    hypervisors = [f"vCenter {config.vsphere.url} as {config.vsphere.username}"] if config.vsphere else []
    hypervisors += [f"KVM host {config.libvirt.uri}"] if config.libvirt else []
    storage = ", ".join(f"{c.name} ({c.type})" for c in config.backends)
    logger.info("connected to %s and to the storage backends %s", " and ".join(hypervisors), storage)
    start_sweeps(memo)
    recheck.start(memo, kwargs["virtual_disks"])


def start_sweeps(memo: Any) -> None:
    """The orphan sweep now and every `sweep_seconds` (0: never), in the background: it reports
    (Events on the VirtualDisk CRD, the `lunbridge_orphans` gauge) and removes nothing."""
    config: OperatorConfig = memo.config
    seconds = config.sweep_seconds
    if seconds <= 0:
        return
    services: Services = memo.services
    reporter = Reporter(SweepKube().post_event, services.backends.names)
    memo.sweeper = asyncio.create_task(sweep_forever(services, reporter, seconds), name="orphan sweep")


@kopf.on.cleanup()
async def stopped(*, memo: Any, **_: Any) -> None:
    await recheck.stop(memo)
    sweeper: asyncio.Task[None] | None = getattr(memo, "sweeper", None)
    if sweeper is not None:
        sweeper.cancel()
        with contextlib.suppress(asyncio.CancelledError):
            await sweeper
    services = getattr(memo, "services", None)
    if services is not None:
        await services.hypervisor.close()
        await services.backends.close()
