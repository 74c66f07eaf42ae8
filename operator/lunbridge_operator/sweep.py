"""`lunbridge-operator sweep [--remove]`, and the Kubernetes side of the operator's own sweep.

The command takes the operator's configuration (the same flags and `LUNBRIDGE_*` variables),
connects as the operator does, and prints every orphan (`reconcile.orphans`) on one line of
five tab-separated columns: kind (`lun`, `map`, `rdm`), `backend/<name>` or `vm/<name>`, the
name (a map: `<LUN> -> <igroup>`), the NAA, and why it is an orphan. A summary goes to stderr.

Exit codes: 0 no orphan (with `--remove`: none left); 1 orphans found (with `--remove`: some
left, each said why); 2 the configuration or a peer stopped it (as `lunbridge-operator`);
3 `--remove` refused because an operator replica is alive.

`--remove` detaches orphan RDMs, unmaps orphan maps and deletes orphan LUNs (their snapshots
stay), printing each step. An orphan LUN with no map and no RDM may be what a disk with
`reclaimPolicy: Retain` left on purpose: it is deleted only with `--include-unmapped`. While an
operator replica announces itself alive in the ClusterKopfPeering (`--peering`), `--remove`
refuses: a replica could be making a disk's LUN, map or RDM the moment it is judged; stop the
operator first, or pass `--force` (the orphans are found again just before removal and only
those found both times go; every step is idempotent). Standalone replicas announce nothing.

The operator itself (`--sweep-seconds`, LUNBRIDGE_SWEEP_SECONDS, default 600, 0 = off) sweeps
on start and then periodically, sets `lunbridge_orphans{kind,backend}` and posts Events on the
`virtualdisks.lunbridge.io` CustomResourceDefinition (`kubectl describe crd
virtualdisks.lunbridge.io`); it never removes anything.
"""

from __future__ import annotations

import argparse
import asyncio
import datetime
import logging
import socket
import sys
from collections.abc import Sequence
from typing import Any

from lunbridge import redact
from lunbridge.api import GROUP, VIRTUAL_DISK_PLURAL
from lunbridge.errors import LunbridgeError, NotFound
from lunbridge.kubeapi import client
from lunbridge_operator import config as config_module
from lunbridge_operator.config import ConfigError, OperatorConfig
from lunbridge_operator.kube import Kube
from lunbridge_operator.reconcile import orphans as orphan_steps
from lunbridge_operator.reconcile.orphans import Orphan, OrphanKind

log = logging.getLogger(__name__)

CRD_NAME = f"{VIRTUAL_DISK_PLURAL}.{GROUP}"  # what the operator's orphan Events are about
EVENTS_NAMESPACE = "default"  # where Events of cluster-scoped objects go (as kopf and kubectl do)
COMPONENT = "lunbridge-operator"
EXIT_CLEAN, EXIT_ORPHANS, EXIT_CONFIG, EXIT_REFUSED = 0, 1, 2, 3
PEERING_API = ("kopf.dev", "v1", "clusterkopfpeerings")


# --- the API calls of the sweep ----------------------------------------------------------------
class SweepKube(Kube):
    """The operator's API client plus what only the sweep needs: Events about the VirtualDisk
    CRD, and the replicas alive in the ClusterKopfPeering."""

    def __init__(self, api_client: Any | None = None) -> None:
        super().__init__(api_client)
        self._extensions: Any = client.ApiextensionsV1Api(self._core.api_client)
        self._crd_uid: str | None = None

    async def _crd_reference(self) -> dict[str, str]:
        if self._crd_uid is None:
            try:
                crd: Any = await self._call(
                    f"read CustomResourceDefinition {CRD_NAME}",
                    lambda: self._extensions.read_custom_resource_definition(CRD_NAME),
                )
                self._crd_uid = str(crd.metadata.uid or "")
            except LunbridgeError as exc:
                log.debug("cannot read the CRD for its uid (%s); the Events name it without", exc)
        ref = {"apiVersion": "apiextensions.k8s.io/v1", "kind": "CustomResourceDefinition", "name": CRD_NAME}
        if self._crd_uid:
            ref["uid"] = self._crd_uid
        return ref

    async def post_event(self, reason: str, message: str, warning: bool) -> None:
        """One Event about the VirtualDisk CRD; a failure is logged (Events are auxiliary)."""
        now = datetime.datetime.now(datetime.UTC).isoformat()
        body = {
            "apiVersion": "v1",
            "kind": "Event",
            "metadata": {"namespace": EVENTS_NAMESPACE, "generateName": "lunbridge-orphans-"},
            "action": "Sweep",
            "type": "Warning" if warning else "Normal",
            "reason": reason,
            "message": redact.redact(message),
            "reportingComponent": COMPONENT,
            "reportingInstance": socket.gethostname()[:128],
            "source": {"component": COMPONENT},
            "involvedObject": await self._crd_reference(),
            "firstTimestamp": now,
            "lastTimestamp": now,
            "eventTime": now,
        }
        try:
            await self._call(
                f"post Event {reason}", lambda: self._core.create_namespaced_event(EVENTS_NAMESPACE, body)
            )
        except LunbridgeError as exc:
            log.warning("cannot post the Event %s (%s): %s", reason, message, exc)

    async def live_peers(self, peering: str) -> dict[str, int]:
        """The operator replicas alive in ClusterKopfPeering `peering` (kopf's rule: last seen
        less than their lifetime ago), identity -> priority; none if the object does not exist.
        A replica whose entry cannot be read counts as alive, with the highest priority."""
        try:
            found: dict[str, Any] = await self._call(
                f"read ClusterKopfPeering {peering}",
                lambda: self._custom.get_cluster_custom_object(*PEERING_API, peering),
            )
        except NotFound:
            return {}
        now = datetime.datetime.now(datetime.UTC)
        alive: dict[str, int] = {}
        for identity, info in sorted((found.get("status") or {}).items()):
            if not isinstance(info, dict):
                continue
            try:
                seen = datetime.datetime.fromisoformat(str(info.get("lastseen")).replace("Z", "+00:00"))
                lifetime = datetime.timedelta(seconds=int(info.get("lifetime", 60)))
                priority = int(info.get("priority", 0))
            except (TypeError, ValueError):
                alive[identity] = sys.maxsize  # unreadable: counted alive, to be safe
                continue
            if seen.tzinfo is None:
                seen = seen.replace(tzinfo=datetime.UTC)
            if seen + lifetime > now:
                alive[identity] = priority
        return alive


# --- the command --------------------------------------------------------------------------------
def _parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(
        prog="lunbridge-operator sweep",
        add_help=False,
        allow_abbrev=False,
        description=(
            "Print every LUN, map and RDM that carries lunbridge's naming but belongs to no lunbridge "
            "object, one per line: kind, backend/<name> or vm/<name>, name, NAA, why. Exit 0 if none, "
            "1 if any (with --remove: if any is left), 2 on a configuration or connection problem, "
            "3 if --remove is refused. Takes every option and LUNBRIDGE_* variable of lunbridge-operator."
        ),
    )
    parser.add_argument("-h", "--help", action="store_true", help="show this help and exit")
    parser.add_argument(
        "--remove", action="store_true", help="detach orphan RDMs, unmap orphan maps, delete orphan LUNs"
    )
    parser.add_argument(
        "--include-unmapped",
        action="store_true",
        help="with --remove, also delete orphan LUNs that are neither mapped nor attached "
        "(a disk deleted with reclaimPolicy Retain leaves its LUN so)",
    )
    parser.add_argument(
        "--force",
        action="store_true",
        help="with --remove, remove even while an operator replica is alive in the ClusterKopfPeering",
    )
    return parser


def _err(message: str) -> None:
    print(redact.redact(message), file=sys.stderr)


def _out(message: str) -> None:
    print(redact.redact(message), flush=True)


def _summary(found: Sequence[Orphan]) -> str:
    if not found:
        return "no orphan"
    counts = ", ".join(f"{sum(1 for o in found if o.kind is kind)} {kind.value}" for kind in OrphanKind)
    return f"{len(found)} orphan(s): {counts}"


async def _guard(config: OperatorConfig, force: bool) -> str | None:
    """Why `--remove` must not run now (a live replica), or None."""
    if force:
        return None
    if config.standalone:
        _err(
            "note: a standalone operator (LUNBRIDGE_STANDALONE) announces itself nowhere; make sure none "
            "runs while orphans are removed"
        )
        return None
    try:
        peers = await SweepKube().live_peers(config.peering)
    except LunbridgeError as exc:
        return f"cannot tell whether an operator replica is running ({exc})"
    if peers:
        return (
            f"operator replica(s) {', '.join(peers)} are alive in ClusterKopfPeering {config.peering}; one "
            "could be making a disk's LUN, map or RDM right now"
        )
    return None


async def run(config: OperatorConfig, *, remove: bool, include_unmapped: bool, force: bool) -> int:
    from lunbridge_operator.handlers.lifecycle import connect  # the handlers import this module

    try:
        svc = await connect(config)
    except LunbridgeError as exc:
        _err(f"lunbridge-operator sweep: cannot start: {exc}")
        return EXIT_CONFIG
    try:
        found = await orphan_steps.find(svc)
        for orphan in found:
            _out(orphan.line())
        _err(_summary(found))
        if not remove or not found:
            return EXIT_ORPHANS if found else EXIT_CLEAN
        refusal = await _guard(config, force)
        if refusal is not None:
            _err(
                f"lunbridge-operator sweep: --remove refused: {refusal}. Stop the operator (e.g. scale its "
                "Deployment to 0) and run again, or pass --force: orphans are found again just before "
                "removal and only those found both times go"
            )
            return EXIT_REFUSED
        left = await orphan_steps.remove(svc, found, _out, include_unmapped=include_unmapped)
        _err(f"{len(found) - len(left)} removed, {len(left)} left")
        return EXIT_ORPHANS if left else EXIT_CLEAN
    except LunbridgeError as exc:
        _err(f"lunbridge-operator sweep: {exc}")
        return EXIT_CONFIG
    finally:
        await svc.hypervisor.close()
        await svc.backends.close()


def command(argv: Sequence[str]) -> int:
    """`lunbridge-operator sweep ARGS`: the exit code."""
    options, rest = _parser().parse_known_args(list(argv))
    if options.help:
        _parser().print_help()
        print("\noperator options (the same as lunbridge-operator's):")
        try:
            operator = config_module.build_parser()
        except ConfigError as exc:
            _err(f"lunbridge-operator sweep: {exc}")
            return EXIT_CONFIG
        print("\n\n".join(operator.format_help().split("\n\n")[2:]))
        return EXIT_CLEAN
    try:
        config = config_module.load(rest)
    except ConfigError as exc:
        _err(f"lunbridge-operator sweep: {exc}")
        return EXIT_CONFIG
    return asyncio.run(
        run(config, remove=options.remove, include_unmapped=options.include_unmapped, force=options.force)
    )
