"""The simulator's core: its configuration, its state under one lock, and the helpers every
endpoint shares (the SVM check, jobs and `return_timeout`, size rounding, the data plane).

One re-entrant lock guards the state: a request handler and a job's work each hold it while
they read or change anything, then save the state file and bring tgtd in line before they
let go, so what the REST API answers and what initiators see never disagree for long.
"""

from __future__ import annotations

import hashlib
import logging
import re
import threading
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from tests.lab.ontap import errors
from tests.lab.ontap.dataplane import DataPlane, LuSpec, TargetSpec
from tests.lab.ontap.files import LunFiles
from tests.lab.ontap.jobs import Job, Jobs
from tests.lab.ontap.state import Credential, Igroup, State

log = logging.getLogger("ontap-sim")
Json = dict[str, Any]
NAA_PREFIX = "600a0980"  # NAA type 6 + NetApp's OUI 00a098, as clustered ONTAP forms it
ISCSI_LUN_IDS = range(1, 256)  # tgt keeps LUN 0 for its controller; see README


@dataclass(frozen=True)
class Config:
    state_dir: Path
    svm: str
    username: str
    password: str
    tgt_control: int
    tgt_portal: str
    iqn_prefix: str
    data_interfaces: tuple[str, ...]
    aggregates: tuple[str, ...] = ("aggr1",)
    job_delay: float = 0.2
    page_size: int | None = None
    lun_size_granule: int = 1 << 20
    lun_size_extra: int = 0
    lun_clone_split_seconds: float = 0.0
    cluster_name: str = "lunbridge-sim"


@dataclass
class Request:
    method: str
    path: str
    args: tuple[str, ...]
    query: dict[str, str]
    body: Json


@dataclass
class Response:
    status: int
    body: Json = field(default_factory=dict)
    location: str | None = None


def naa_hex(serial: str) -> str:
    """The NAA (without `naa.`) an initiator reads for a LUN of this serial."""
    return NAA_PREFIX + serial.encode("ascii").hex()


def target_name(prefix: str, igroup: str) -> str:
    """The tgt target that serves an iSCSI igroup's maps (README: one target per igroup):
    `<prefix><igroup name>` when the name is a valid IQN part (lower-case letters, digits,
    `.`, `-`, `:`), else the name with each other character made `-` (lower-cased), and
    `-` + 8 hex digits of its SHA-1, so that two igroup names never share a target."""
    safe = re.sub(r"[^a-z0-9.:-]", "-", igroup.lower())
    if safe != igroup:
        safe += "-" + hashlib.sha1(igroup.encode("utf-8")).hexdigest()[:8]
    return prefix + safe


class Sim:
    def __init__(self, config: Config) -> None:
        self.config = config
        self.lock = threading.RLock()
        config.state_dir.mkdir(parents=True, exist_ok=True)
        self.state_file = config.state_dir / "state.json"
        self.state = State.load(self.state_file)
        self.files = LunFiles(config.state_dir)
        self.plane = DataPlane(config.tgt_control, config.iqn_prefix, config.state_dir / "tgt-accounts.json")
        self.jobs = Jobs(self.lock, config.job_delay)
        self.save()

    # --- persistence and the data plane ------------------------------------------------

    def save(self) -> None:
        self.state.save(self.state_file)

    def commit(self, recreate: frozenset[tuple[str, int]] = frozenset()) -> None:
        """Save the state, then make tgtd serve it (LUs in `recreate` are made anew)."""
        self.save()
        self.plane.apply(self.desired(), recreate)

    def ensure_plane(self) -> None:
        """Re-apply the data plane when tgtd lacks a target it should have (restarted)."""
        desired = self.desired()
        if self.plane.lacks(desired):
            log.info("tgtd lacks targets of this simulator: applying the data plane again")
            self.plane.apply(desired)

    def credential_for(self, initiator: str) -> Credential | None:
        creds = self.state.credentials
        return creds.get(initiator) or creds.get("default")

    def desired(self) -> dict[str, TargetSpec]:
        out: dict[str, TargetSpec] = {}
        for igroup in self.state.igroups.values():
            if not has_iscsi(igroup):
                continue
            names = [i for i in igroup.initiators if i.startswith(("iqn.", "eui.", "naa."))]
            creds = {i: self.credential_for(i) for i in names}
            chap = {i: c for i, c in creds.items() if c is not None and c.auth_type == "chap"}
            denied = {i for i, c in creds.items() if c is not None and c.auth_type == "deny"}
            acl = frozenset(i for i in names if i not in denied)
            incoming = {c.inbound_user: c.inbound_password for c in chap.values() if c.inbound_user}
            outs = [chap[i] for i in sorted(chap) if chap[i].outbound_user]
            outgoing = (outs[0].outbound_user, outs[0].outbound_password) if outs else None
            luns = {}
            for lun_map in self.state.maps_of_igroup(igroup.uuid):
                lun = self.state.luns[lun_map.lun]
                path = str(self.files.lun(lun.volume, lun.uuid))
                luns[lun_map.lun_id] = LuSpec(path, lun.size, naa_hex(lun.serial), lun.serial)
            out[target_name(self.config.iqn_prefix, igroup.name)] = TargetSpec(luns, acl, incoming, outgoing)
        return out

    def lus_of(self, lun_uuid: str) -> frozenset[tuple[str, int]]:
        """The (target, LU number) pairs that serve a LUN."""
        out = set()
        for lun_map in self.state.maps_of_lun(lun_uuid):
            igroup = self.state.igroups[lun_map.igroup]
            if has_iscsi(igroup):
                out.add((target_name(self.config.iqn_prefix, igroup.name), lun_map.lun_id))
        return frozenset(out)

    # --- shared request helpers ----------------------------------------------------------

    def svm_ref(self) -> Json:
        return {
            "name": self.config.svm,
            "uuid": self.state.svm_uuid,
            "_links": {"self": {"href": f"/api/svm/svms/{self.state.svm_uuid}"}},
        }

    def check_svm(self, body: Json, required: bool = True) -> None:
        """The body's `svm` must name this simulator's SVM (by name or uuid)."""
        svm = body.get("svm")
        if not isinstance(svm, dict) or not (svm.get("name") or svm.get("uuid")):
            if required:
                raise errors.bad(
                    errors.MISSING_VALUE, 'Missing value for "svm.name" or "svm.uuid".', "svm.name"
                )
            return
        if svm.get("name") not in (None, self.config.svm) or svm.get("uuid") not in (
            None,
            self.state.svm_uuid,
        ):
            shown = svm.get("name") or svm.get("uuid")
            raise errors.bad(errors.SVM_NOT_FOUND, f'SVM "{shown}" does not exist.', "svm.name")

    def check_svm_uuid(self, uuid: str) -> None:
        if uuid != self.state.svm_uuid:
            raise errors.not_found(f"SVM {uuid}")

    def round_lun_size(self, size: int) -> int:
        granule = self.config.lun_size_granule
        return -(-size // granule) * granule + self.config.lun_size_extra

    def run_job(
        self,
        req: Request,
        work: Callable[[], Any],
        done: Callable[[Any], Response],
        location: str | None = None,
    ) -> Response:
        """Run `work` as an ONTAP job: 202 with the job link, or — when `return_timeout=N` is
        given and the job ends within N seconds — what `done(result)` answers (or the job's
        error)."""
        description = f"{req.method} {location or req.path}"
        job = self.jobs.submit(description, {"name": self.config.svm, "uuid": self.state.svm_uuid}, work)
        timeout = _return_timeout(req.query)
        if timeout > 0 and _wait_unlocked(self.lock, job, timeout):
            if job.error is not None:
                raise job.error
            return done(job.result)
        body = {"job": {"uuid": job.uuid, "_links": {"self": {"href": f"/api/cluster/jobs/{job.uuid}"}}}}
        return Response(202, body, location)


def has_iscsi(igroup: Igroup) -> bool:
    return igroup.protocol in ("iscsi", "mixed")


def _return_timeout(query: dict[str, str]) -> float:
    raw = query.get("return_timeout", "0")
    if not re.fullmatch(r"\d+", raw) or int(raw) > 120:
        raise errors.bad(
            errors.INVALID_VALUE,
            f'The value "{raw}" is invalid for field "return_timeout" (0..120).',
            "return_timeout",
        )
    return float(raw)


def _wait_unlocked(lock: threading.RLock, job: Job, timeout: float) -> bool:
    """Wait for a job while letting go of the lock the handler holds (the job needs it)."""
    depth = 0
    while True:
        try:
            lock.release()
        except RuntimeError:
            break
        depth += 1
    try:
        return job.done.wait(timeout)
    finally:
        for _ in range(depth):
            lock.acquire()
