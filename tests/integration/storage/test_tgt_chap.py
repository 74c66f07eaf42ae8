"""CHAP on a real tgtd (a private one, which this test restarts), proven from the initiator
side with libiscsi's `iscsi-inq`: the right secrets log in, a wrong one does not.

libiscsi 1.19 does mutual CHAP too (`LIBISCSI_CHAP_TARGET_USERNAME`/`_PASSWORD`, or
`?target_user=..&target_password=..` in the URL): so both directions are proven here. The
secrets go through the environment rather than the URL (`iscsi://user%secret@host/...`),
which has no escaping for a '%' or '@' in a secret."""

from __future__ import annotations

import os
import subprocess
import time
from pathlib import Path

from lunbridge.storage.base import Chap
from lunbridge.storage.tgt import TgtBackend
from tests.integration.storage.conftest import config_for, kill_tgtd, restart_tgtd
from tests.lab.tgt import Tgt
from tests.unit.storage.mapped import mapped_lun

NODE = "iqn.1998-01.com.example:chap-node"
CHAP = Chap("node-user", "initiator-secret-1", "array-user", "target-secret-01")


def _inquiry(tgt: Tgt, target: str, chap: Chap | None) -> str:
    """What `iscsi-inq` as NODE says about LUN 1 of `target`, logging in with `chap`;
    "ok" when it logged in and read the LUN."""
    env = {k: v for k, v in os.environ.items() if not k.startswith("LIBISCSI_CHAP_")}
    if chap is not None:
        env |= {"LIBISCSI_CHAP_USERNAME": chap.user, "LIBISCSI_CHAP_PASSWORD": chap.secret}
    if chap is not None and chap.mutual_user is not None and chap.mutual_secret is not None:
        env |= {"LIBISCSI_CHAP_TARGET_USERNAME": chap.mutual_user}
        env |= {"LIBISCSI_CHAP_TARGET_PASSWORD": chap.mutual_secret}
    done = subprocess.run(
        ["iscsi-inq", "-i", NODE, f"iscsi://{tgt.portal}/{target}/1"],
        capture_output=True,
        text=True,
        timeout=30,
        env=env,
        check=False,
    )
    if done.returncode == 0 and "DIRECT_ACCESS" in done.stdout:
        return "ok"
    return (done.stdout + done.stderr).strip()


async def test_chap_logs_in_the_right_secrets_only_and_survives_a_tgtd_restart(
    own_tgt: Tgt, tmp_path: Path, prefix: str
) -> None:
    started = time.monotonic()
    backend = TgtBackend(config_for(own_tgt, tmp_path, prefix))
    try:
        await mapped_lun(backend, "vol", 16 << 20, "node", NODE)
        target = backend.target_name("node")
        assert _inquiry(own_tgt, target, None) == "ok"  # no CHAP yet: the ACL alone

        await backend.set_chap("node", CHAP)
        shown = own_tgt.adm("--op", "show", "--mode", "target").stdout
        assert "    Account information:\n        node-user\n        array-user (outgoing)\n" in shown
        assert _inquiry(own_tgt, target, CHAP) == "ok"
        wrong = Chap("node-user", "initiator-secret-2", "array-user", "target-secret-01")
        assert "Authentication failure" in _inquiry(own_tgt, target, wrong)
        assert "Authentication failure" in _inquiry(own_tgt, target, None)
        fake_target = Chap("node-user", "initiator-secret-1", "array-user", "target-secret-02")
        assert "Invalid CHAP_R response from the target" in _inquiry(own_tgt, target, fake_target)

        await backend.set_chap("node", wrong)  # a changed secret replaces the old one
        assert _inquiry(own_tgt, target, wrong) == "ok"
        assert "Authentication failure" in _inquiry(own_tgt, target, CHAP)
        other = Chap("other-user", "initiator-secret-3")  # a new user: the old account goes
        await backend.set_chap("node", other)
        assert _inquiry(own_tgt, target, other) == "ok"
        assert own_tgt.adm("--mode", "account", "--op", "show").stdout == "Account list:\n    other-user\n"
        await backend.set_chap("node", wrong)

        folder = tmp_path / "own-tgtd"
        kill_tgtd(folder)
        restart_tgtd(folder, own_tgt)  # an empty tgtd: no target, no account
        await backend.sync()
        assert _inquiry(own_tgt, target, wrong) == "ok"
        assert "Authentication failure" in _inquiry(own_tgt, target, None)

        await backend.set_chap("node", None)
        assert _inquiry(own_tgt, target, None) == "ok"
        assert own_tgt.adm("--mode", "account", "--op", "show").stdout == ""  # no account left
    finally:
        await backend.close()
    assert time.monotonic() - started < 5
