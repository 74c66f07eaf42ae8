"""Operator start-up and shut-down: kopf settings, the connections to the hypervisor and the
storage server, and the metrics endpoint."""

from __future__ import annotations

import logging
from typing import Any

import kopf

from lunbridge.api import FINALIZER
from lunbridge.hypervisor.vsphere import VSphere
from lunbridge.storage.tgt import TgtBackend
from lunbridge_operator import metrics
from lunbridge_operator.config import OperatorConfig
from lunbridge_operator.handlers.common import crash_after
from lunbridge_operator.kube import Kube
from lunbridge_operator.reconcile.services import Services


async def connect(config: OperatorConfig) -> Services:
    """Log in to vCenter and reach tgtd (each raises a clear domain error if it cannot)."""
    hypervisor = await VSphere.connect(config.vsphere)
    storage = TgtBackend(config.tgt)
    try:
        await storage.pools()
    except BaseException:
        await hypervisor.close()
        raise
    portals = await storage.portals()
    return Services(
        hypervisor=hypervisor,
        storage=storage,
        kube=Kube(),
        transport=config.transport,
        default_scope=config.default_scope,
        portal=portals[0].address if portals else None,
        after_step=crash_after,
    )


@kopf.on.startup()
async def started(
    *,
    settings: kopf.OperatorSettings,
    memo: Any,
    logger: logging.Logger | logging.LoggerAdapter[Any],
    **_: Any,
) -> None:
    config: OperatorConfig = memo.config
    settings.persistence.finalizer = FINALIZER
    settings.posting.level = logging.INFO
    settings.watching.server_timeout = 300
    memo.locks = {}
    memo.checked = {}
    memo.services = await connect(config)
    metrics.serve(config.metrics_port)
    logger.info("connected to vCenter %s as %s and to tgtd -C %s", config.vsphere.url,
                config.vsphere.username, config.tgt.control)  # fmt: skip


@kopf.on.cleanup()
async def stopped(*, memo: Any, **_: Any) -> None:
    services = getattr(memo, "services", None)
    if services is not None:
        await services.hypervisor.close()
        await services.storage.close()
