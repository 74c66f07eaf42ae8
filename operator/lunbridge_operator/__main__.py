"""Command line of `lunbridge-operator`: check the configuration and the peers, then run kopf;
`lunbridge-operator sweep [--remove]` lists (and removes) orphans instead (see `sweep`).

A missing setting, a wrong password or an unreachable vCenter or tgtd stops the operator
here, before it touches any object, with one line that says what to fix. No line it writes
shows a secret: the start-up lines pass through `lunbridge.redact`, and its log filter sits
on every log handler (kopf's lines, the JSON format, and the Events kopf posts from them).
"""

from __future__ import annotations

import asyncio
import os
import socket
import sys
from collections.abc import Sequence

import kopf

from lunbridge import redact
from lunbridge.errors import LunbridgeError
from lunbridge_operator import config as config_module
from lunbridge_operator import memory, sweep
from lunbridge_operator.config import ConfigError, OperatorConfig

build_parser = config_module.build_parser


async def _preflight(config: OperatorConfig) -> None:
    from lunbridge_operator.handlers.lifecycle import connect

    services = await connect(config)
    await services.hypervisor.close()
    await services.backends.close()


def _refuse(message: str) -> int:
    print(redact.redact(f"lunbridge-operator: {message}"), file=sys.stderr)
    return 2


def _help() -> int:
    build_parser().print_help()
    print("\n`lunbridge-operator sweep --help`: list (and remove) orphan LUNs, maps and RDMs")
    return 0


def main(argv: Sequence[str] | None = None) -> int:
    memory.two_arenas()  # before any thread starts
    redact.install_log_filter()  # the lines logged while checking the configuration and peers
    args = list(sys.argv[1:] if argv is None else argv)
    if args[:1] == ["sweep"]:
        return sweep.command(args[1:])
    if "-h" in args or "--help" in args:
        try:
            return _help()
        except ConfigError as exc:  # an environment variable the options default from is wrong
            return _refuse(str(exc))
    try:
        config = config_module.load(args)
    except ConfigError as exc:
        return _refuse(str(exc))
    try:
        asyncio.run(_preflight(config))
    except LunbridgeError as exc:
        return _refuse(f"cannot start: {exc}")
    import lunbridge_operator.handlers  # noqa: F401  (registers the handlers)

    log_format = kopf.LogFormat.JSON if config.log_format == "json" else kopf.LogFormat.FULL
    kopf.configure(verbose=False, log_format=log_format)
    redact.install_log_filter()  # again: kopf.configure replaced the root logger's handler
    # as kopf names a replica in the peering (POD_ID, else host and process); the re-check pass
    # needs to know it to follow kopf's pauses
    identity = os.environ.get("POD_ID") or f"{socket.gethostname()}/{os.getpid()}"
    kopf.run(
        clusterwide=True,
        standalone=config.standalone,
        peering_name=None if config.standalone else config.peering,
        priority=config.priority,
        identity=identity,  # type: ignore[arg-type]  # kopf types it as its own NewType of str
        liveness_endpoint=config.liveness,
        memo=kopf.Memo(config=config, identity=identity),
    )
    return 0


if __name__ == "__main__":
    sys.exit(main())
