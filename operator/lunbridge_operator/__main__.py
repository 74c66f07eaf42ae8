"""Command line of `lunbridge-operator`: check the configuration and the peers, then run kopf.

A missing setting, a wrong password or an unreachable vCenter or tgtd stops the operator
here, before it touches any object, with one line that says what to fix.
"""

from __future__ import annotations

import asyncio
import sys
from collections.abc import Sequence

import kopf

from lunbridge.errors import LunbridgeError
from lunbridge_operator import config as config_module
from lunbridge_operator.config import ConfigError, OperatorConfig

build_parser = config_module.build_parser


async def _preflight(config: OperatorConfig) -> None:
    from lunbridge_operator.handlers.lifecycle import connect

    services = await connect(config)
    await services.hypervisor.close()
    await services.backends.close()


def main(argv: Sequence[str] | None = None) -> int:
    try:
        config = config_module.load(argv)
    except ConfigError as exc:
        print(f"lunbridge-operator: {exc}", file=sys.stderr)
        return 2
    try:
        asyncio.run(_preflight(config))
    except LunbridgeError as exc:
        print(f"lunbridge-operator: cannot start: {exc}", file=sys.stderr)
        return 2
    import lunbridge_operator.handlers  # noqa: F401  (registers the handlers)

    log_format = kopf.LogFormat.JSON if config.log_format == "json" else kopf.LogFormat.FULL
    kopf.configure(verbose=False, log_format=log_format)
    kopf.run(
        clusterwide=True,
        standalone=config.standalone,
        peering_name=None if config.standalone else config.peering,
        priority=config.priority,
        liveness_endpoint=config.liveness,
        memo=kopf.Memo(config=config),
    )
    return 0


if __name__ == "__main__":
    sys.exit(main())
