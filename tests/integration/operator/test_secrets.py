"""No secret leaves lunbridge (issue 12, case 4): `lunbridge-operator` is made to refuse inputs
that carry the lab's vCenter password and other secret values, and to fail a VirtualDisk with a
command whose arguments carry them; then everything the runs printed and logged, the disks'
status and every Event are searched for those values.

(a) a vSphere URL with `user:password@` (a bad port, a good one, plain http, in a credentials
    folder): refused in one line that names the setting and shows no password;
(b) a wrong password (the lab's + "x"), from the environment or a credentials folder: the
    login is refused naming the URL and the user, and neither password shows;
(c) the operator running normally with the lab's password, its tgt backend's only pool in a
    folder whose path holds the lab's vCenter password and a CHAP-like secret from the
    backend's credentialsDir (both registered with `lunbridge.redact` by the operator), and a
    clone whose copy (a FICLONE of the origin's file, tgt/files.py) fails because the origin's
    backing file is gone: the error quotes both paths and the system's reason (status, Ready
    condition, Warning Event, kopf's log lines in JSON), each with the path masked. No command
    lunbridge runs today takes a credential as such (`--password`, `-n …auth.password -v`):
    those argument rules, and a command line quoting such a path, are checked in
    tests/unit/test_redact.py.
"""

from __future__ import annotations

import json
import os
import secrets
import subprocess
import sys
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path
from urllib.parse import quote, urlsplit

import pytest

from tests.integration.operator import observe
from tests.integration.operator.conftest import Disks
from tests.lab import operator as operator_lab
from tests.lab import procs
from tests.lab.lab import LabState, kubectl

NAME = "operator-secrets"
MASK = "***"
REFUSED_URL = "carries a user name or password"


def run_operator(lab: LabState, changes: dict[str, str | None], *args: str) -> tuple[int, str]:
    """Run `lunbridge-operator` to its refusal with the lab's environment changed (None removes a
    variable); its exit status and everything it printed."""
    env = {k: v for k, v in os.environ.items() if not k.startswith("LUNBRIDGE_")}
    env.update(lab.env(), LUNBRIDGE_METRICS_PORT="0")
    for key, value in changes.items():
        if value is None:
            env.pop(key, None)
        else:
            env[key] = value
    result = subprocess.run(
        [sys.executable, "-m", "lunbridge_operator", *args],
        env=env,
        capture_output=True,
        text=True,
        timeout=90,
    )
    print(f"exit {result.returncode}: {result.stderr.strip()}")
    return result.returncode, result.stdout + result.stderr


def credentials_folder(folder: Path, url: str, user: str, password: str) -> Path:
    """A mounted vSphere Secret (`--vsphere-credentials`)."""
    folder.mkdir(parents=True)
    for key, value in {"url": url, "username": user, "password": password + "\n"}.items():
        (folder / key).write_text(value)
    return folder


def without_vsphere_env() -> dict[str, str | None]:
    return {"LUNBRIDGE_VSPHERE_URL": None, "LUNBRIDGE_VSPHERE_USER": None, "LUNBRIDGE_VSPHERE_PASSWORD": None}


def assert_absent(text: str, *values: str, where: str) -> None:
    for value in values:
        assert value not in text, f"a secret ({value[:3]}…) shows in {where}"


# --- (a) a URL that carries user:password@ ----------------------------------------------------
@pytest.mark.parametrize("form", ["bad-port", "good-port", "http", "credentials-folder"])
def test_a_url_with_a_password_is_refused_without_showing_it(
    lab: LabState, tmp_path: Path, form: str
) -> None:
    url_password = "Url-" + secrets.token_urlsafe(12)
    parts = urlsplit(lab.vsphere_url)
    user = quote(lab.vsphere_user, safe="")
    urls = {
        "bad-port": f"https://administrator:{url_password}@{parts.hostname}:99999/sdk",
        "good-port": f"https://{user}:{lab.vsphere_password}@{parts.hostname}:{parts.port}/sdk",
        "http": f"http://administrator:{url_password}@{parts.hostname}:{parts.port}/sdk",
        "credentials-folder": f"https://administrator:{url_password}@{parts.hostname}:99999/sdk",
    }
    if form == "credentials-folder":
        folder = credentials_folder(tmp_path / "vsphere", urls[form], lab.vsphere_user, lab.vsphere_password)
        status, output = run_operator(lab, without_vsphere_env(), "--vsphere-credentials", str(folder))
    else:
        status, output = run_operator(
            lab, {"LUNBRIDGE_VSPHERE_URL": urls[form], "LUNBRIDGE_LOG_FORMAT": "json"}
        )
    assert status == 2, output
    assert REFUSED_URL in output
    assert output.count("\n") <= 2, output  # one line, no traceback
    assert_absent(output, url_password, lab.vsphere_password, where=f"the refusal ({form})")


# --- (b) a wrong password -----------------------------------------------------------------------
@pytest.mark.parametrize("source", ["environment", "credentials-folder"])
def test_a_wrong_password_is_refused_showing_neither_password(
    lab: LabState, tmp_path: Path, source: str
) -> None:
    wrong = lab.vsphere_password + "x"
    if source == "credentials-folder":
        folder = credentials_folder(tmp_path / "vsphere", lab.vsphere_url, lab.vsphere_user, wrong)
        status, output = run_operator(lab, without_vsphere_env(), "--vsphere-credentials", str(folder))
    else:
        status, output = run_operator(
            lab, {"LUNBRIDGE_VSPHERE_PASSWORD": wrong, "LUNBRIDGE_LOG_FORMAT": "json"}
        )
    assert status == 2, output
    assert "wrong user name or password" in output
    assert lab.vsphere_url in output
    assert lab.vsphere_user in output
    assert_absent(output, wrong, lab.vsphere_password, where=f"the refusal ({source})")


# --- (c) a failing command whose arguments carry secrets ---------------------------------------
@dataclass(frozen=True)
class Vault:
    """The secret-laden configuration of the module's operator."""

    chap_secret: str
    pool: Path  # .../<lab's vCenter password>/<chap secret>: the backend's only pool
    log: Path


@pytest.fixture(scope="module")
def vault(lab: LabState, tmp_path_factory: pytest.TempPathFactory) -> Iterator[Vault]:
    """`lunbridge-operator` with the lab's vCenter password, JSON logs, and one tgt backend of its
    own (state file, IQN prefix, credentialsDir) whose pool folder's path holds the secrets."""
    folder = tmp_path_factory.mktemp("secrets")
    chap_secret = "Chap-" + secrets.token_urlsafe(12)
    credentials = folder / "credentials"
    credentials.mkdir()
    (credentials / "username").write_text("chap-user")
    (credentials / "chapSecret").write_text(chap_secret)
    pool = folder / "pools" / lab.vsphere_password / chap_secret
    pool.mkdir(parents=True)
    env = lab.env()
    backends = folder / "backends.json"
    backends.write_text(json.dumps({"backends": [{
        "name": "vault", "type": "tgt", "default": True, "credentialsDir": str(credentials),
        "settings": {
            "portal": env["LUNBRIDGE_TGT_PORTAL"],
            "controlPort": int(env["LUNBRIDGE_TGT_CONTROL_PORT"]),
            "pools": {"vault": str(pool)},
            "stateFile": str(folder / "tgt-state.json"),
            "iqnPrefix": "iqn.2024-01.io.lunbridge.secrets:",
        },
    }]}))  # fmt: skip
    log = procs.log_file(Path(lab.lab_dir), NAME)
    log.unlink(missing_ok=True)  # everything in it is this module's run
    operator_lab.start(
        lab,
        name=NAME,
        extra_env={
            "LUNBRIDGE_BACKENDS_FILE": str(backends),
            "LUNBRIDGE_TGT_PORTAL": "",
            "LUNBRIDGE_TGT_NODE_PORTALS": "",
            "LUNBRIDGE_TGT_CONTROL_PORT": "",
            "LUNBRIDGE_TGT_POOL_DIR": "",
            "LUNBRIDGE_TGT_STATE_FILE": "",
            "LUNBRIDGE_LOG_FORMAT": "json",
        },
    )
    yield Vault(chap_secret, pool, log)
    operator_lab.stop(lab, name=NAME)


def test_a_failing_copy_quotes_its_paths_with_the_secrets_masked(
    lab: LabState, vault: Vault, disks: Disks
) -> None:
    origin = observe.wait_ready(lab, disks.make(size="16Mi"))
    backing = vault.pool / "luns" / f"{origin['status']['lun']['name']}.img"
    assert backing.exists(), f"the origin's LUN is not in the secret pool: {sorted(vault.pool.rglob('*'))}"
    backing.unlink()  # so the copy of it for the clone fails, quoting its path (masked)

    clone = disks.make(size="16Mi", source={"virtualDisk": origin["metadata"]["name"]})

    def failed() -> str | None:
        disk = observe.get(lab, "vdisk", clone)
        message = str(observe.condition(disk, "Ready").get("message", "")) if disk else ""
        return message if "cannot clone" in message else None

    message = observe.eventually(failed, 60, "the clone's Ready=False message about the copy")
    print(f"Ready=False: {message}")
    assert "No such file or directory" in message, message
    assert f"/pools/{MASK}/{MASK}/luns/" in message, message  # the path is there, masked
    failing = observe.get(lab, "vdisk", clone)
    assert failing is not None
    observe.eventually(lambda: observe.warnings(lab, failing), 30, "a Warning Event about the clone")

    hidden = (lab.vsphere_password, vault.chap_secret)
    for name in (origin["metadata"]["name"], clone):
        result = kubectl(lab, "get", "vdisk", name, "-o", "json")
        assert result.returncode == 0, result.stderr
        assert_absent(result.stdout, *hidden, where=f"VirtualDisk {name}")
    events = kubectl(lab, "get", "events", "-A", "-o", "json")
    assert events.returncode == 0, events.stderr
    assert any(MASK in e.get("message", "") for e in json.loads(events.stdout)["items"]), "no masked Event"
    assert_absent(events.stdout, *hidden, where="the Events")
    log = observe.eventually(
        lambda: text if "cannot clone" in (text := vault.log.read_text(errors="replace")) else None,
        30,
        f"the operator's log line about the failed copy in {vault.log}",
    )
    assert_absent(log, *hidden, where=f"the operator's log {vault.log}")
