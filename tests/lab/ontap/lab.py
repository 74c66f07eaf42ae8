"""Start and stop the ONTAP REST simulator from tests (and the lab), as one more lab peer.

`start` makes the lab CA and server certificate, writes the password to a file only the
simulator reads, starts `python -m tests.lab.ontap` through `tests.lab.procs` (PID file, log
in the folder) on a free port, and waits until it answers an authenticated HTTPS request.
The answer, an `OntapSim`, holds what a client needs: the URL, the CA file to trust, the
credentials, and where the data plane is (the tgtd portal, the IQN prefix of its targets).
"""

from __future__ import annotations

import base64
import json
import secrets
import ssl
import sys
import time
import urllib.error
import urllib.request
import uuid
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from tests.lab import procs
from tests.lab.ontap import certs
from tests.lab.ontap.dataplane import DataPlane
from tests.lab.ontap.sim import target_name
from tests.lab.tgt import Tgt

NAME = "ontap-sim"
REPO = Path(__file__).resolve().parents[3]


@dataclass(frozen=True)
class OntapSim:
    url: str  # https://127.0.0.1:PORT
    port: int
    ca_file: Path  # the lab CA's PEM: trust it to reach `url`
    svm: str
    username: str
    password: str
    iqn_prefix: str  # the tgt targets of this simulator are <iqn_prefix><igroup name>
    state_dir: Path
    portal: str  # the tgtd iSCSI portal (host:port) that serves the mapped LUNs
    tgt_control: int
    name: str = NAME  # its PID file and log in the lab folder: <name>.pid, <name>.log

    def target(self, igroup: str) -> str:
        """The tgt target an initiator logs in to for the LUNs mapped to `igroup`."""
        return target_name(self.iqn_prefix, igroup)


def start(
    folder: Path,
    tgt: Tgt,
    *,
    state_dir: Path | None = None,
    svm: str = "svm_lunbridge",
    username: str = "admin",
    password: str | None = None,
    iqn_prefix: str | None = None,
    port: int | None = None,
    job_delay: float = 0.2,
    page_size: int | None = None,
    extra_args: Sequence[str] = (),
    name: str = NAME,
) -> OntapSim:
    """Start a simulator whose LUNs `tgt` serves; the same arguments start it again on the same
    state (a restart)."""
    folder.mkdir(parents=True, exist_ok=True)
    made = certs.make(folder / "ontap-certs")
    password = password or secrets.token_urlsafe(18)
    password_file = folder / f"{name}.password"
    password_file.touch(mode=0o600)
    password_file.write_text(password, encoding="utf-8")
    port = port or procs.free_port()
    sim = OntapSim(
        url=f"https://127.0.0.1:{port}",
        port=port,
        ca_file=made.ca,
        svm=svm,
        username=username,
        password=password,
        iqn_prefix=iqn_prefix or f"iqn.2024-01.io.lunbridge.ontapsim{uuid.uuid4().hex[:8]}:",
        state_dir=state_dir or folder / "ontap-state",
        portal=tgt.portal,
        tgt_control=tgt.control,
        name=name,
    )
    argv = [
        sys.executable, "-m", "tests.lab.ontap", "--state-dir", str(sim.state_dir),
        "--listen", f"127.0.0.1:{port}", "--cert", str(made.cert), "--key", str(made.key), "--svm", svm,
        "--username", username, "--password-file", str(password_file), "--tgt-control", str(tgt.control),
        "--tgt-portal", tgt.portal, "--iqn-prefix", sim.iqn_prefix, "--data-interface", tgt.portal,
        "--job-delay", str(job_delay), *(["--page-size", str(page_size)] if page_size else []), *extra_args,
    ]  # fmt: skip
    procs.spawn(folder, name, argv, cwd=REPO)
    procs.wait_port("127.0.0.1", port, 30, name, folder)
    _wait_answers(sim, folder)
    return sim


def request(sim: OntapSim, method: str, path: str, body: object = None) -> tuple[int, Any]:
    """One plain HTTPS call (for the lab itself and tests that need no netapp-ontap)."""
    context = ssl.create_default_context(cafile=str(sim.ca_file))
    token = base64.b64encode(f"{sim.username}:{sim.password}".encode()).decode()
    data = json.dumps(body).encode() if body is not None else None
    req = urllib.request.Request(sim.url + path, data=data, method=method)
    req.add_header("Authorization", f"Basic {token}")
    req.add_header("Content-Type", "application/json")
    try:
        with urllib.request.urlopen(req, context=context, timeout=30) as answer:
            return answer.status, json.loads(answer.read() or b"{}")
    except urllib.error.HTTPError as exc:
        return exc.code, json.loads(exc.read() or b"{}")


def _wait_answers(sim: OntapSim, folder: Path) -> None:
    deadline = time.monotonic() + 20
    while True:
        try:
            status, _ = request(sim, "GET", "/api/cluster")
            if status == 200:
                return
        except OSError:
            pass
        if time.monotonic() > deadline:
            raise procs.LabError(
                f"{sim.name} does not answer on {sim.url}; see {procs.log_file(folder, sim.name)}"
            )
        time.sleep(0.1)


def stop(folder: Path, sim: OntapSim, keep_targets: bool = False) -> None:
    """Stop the simulator; unless `keep_targets`, also delete its tgt targets (those under its
    prefix) and the CHAP accounts it made. Its state folder stays."""
    procs.stop(folder, sim.name)
    if not keep_targets:
        DataPlane(sim.tgt_control, sim.iqn_prefix, sim.state_dir / "tgt-accounts.json").remove_all()
