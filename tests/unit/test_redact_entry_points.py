"""Where the redaction rule applies at the edges: the operator's configuration refusals, its
and the CSI plugin's start-up lines, gRPC aborts, and the log filter (plain and JSON lines,
tracebacks, kopf's Event poster)."""

from __future__ import annotations

import io
import json
import logging
import os
import subprocess
import sys
from collections.abc import Iterator
from pathlib import Path

import grpc
import kopf
import pytest

from lunbridge import redact
from lunbridge.errors import LunbridgeError
from lunbridge_csi.errors import abort
from lunbridge_operator.config import ConfigError, load

SECRET = "Sup3r-S3cret"
MASK = redact.MASK


@pytest.fixture
def operator_env(monkeypatch: pytest.MonkeyPatch, tmp_path: Path) -> None:
    for key in list(os.environ):
        if key.startswith("LUNBRIDGE_"):
            monkeypatch.delenv(key)
    for key, value in {
        "LUNBRIDGE_VSPHERE_USER": "svc",
        "LUNBRIDGE_VSPHERE_PASSWORD": "Env-Pa55word",
        "LUNBRIDGE_TGT_PORTAL": "127.0.0.1:3260",
        "LUNBRIDGE_TGT_CONTROL_PORT": "7",
        "LUNBRIDGE_TGT_POOL_DIR": str(tmp_path / "pool"),
    }.items():
        monkeypatch.setenv(key, value)


@pytest.mark.usefixtures("operator_env")
@pytest.mark.parametrize(
    "url", ["https://admin:Sup3r-S3cret@vc.example/sdk", "https://admin:Sup3r-S3cret@vc:x/sdk"]
)
def test_the_operator_config_refuses_a_url_with_user_info_without_showing_it(
    monkeypatch: pytest.MonkeyPatch, url: str
) -> None:
    monkeypatch.setenv("LUNBRIDGE_VSPHERE_URL", url)
    with pytest.raises(ConfigError, match="carries a user name or password") as refused:
        load([])
    assert SECRET not in str(refused.value)
    assert redact.redact("Env-Pa55word") == MASK  # registered before anything was checked


@pytest.mark.usefixtures("operator_env")
def test_the_operator_registers_the_secrets_of_credentials_folders(
    monkeypatch: pytest.MonkeyPatch, tmp_path: Path
) -> None:
    vsphere, backend = tmp_path / "vsphere", tmp_path / "backend"
    vsphere.mkdir()
    backend.mkdir()
    (vsphere / "url").write_text("https://vc.example/sdk")
    (vsphere / "username").write_text("folder-user")
    (vsphere / "password").write_text("Folder-Pa55word\n")
    (backend / "chapSecret").write_text("Chap-S3cret-1")
    (backend / "username").write_text("chap-user")
    backends = tmp_path / "backends.yaml"
    backends.write_text(
        json.dumps({"backends": [{"name": "san", "type": "tgt", "credentialsDir": str(backend),
                                  "settings": {"portal": "127.0.0.1:3260", "controlPort": 7,
                                               "poolDir": str(tmp_path / "pool")}}]})
    )  # fmt: skip
    for key in ("LUNBRIDGE_VSPHERE_PASSWORD", "LUNBRIDGE_TGT_PORTAL", "LUNBRIDGE_TGT_CONTROL_PORT",
                "LUNBRIDGE_TGT_POOL_DIR"):  # fmt: skip
        monkeypatch.delenv(key)
    load(["--vsphere-credentials", str(vsphere), "--backends-file", str(backends)])
    assert redact.redact("Folder-Pa55word Chap-S3cret-1 folder-user chap-user") == (
        "*** *** folder-user chap-user"
    )


def test_config_errors_are_redacted() -> None:
    assert str(ConfigError("--backends-file f is not YAML: password: Sup3r-S3cret")) == (
        "--backends-file f is not YAML: password: ***"
    )


async def test_a_grpc_abort_shows_no_secret() -> None:
    class Aborted(Exception):
        pass

    class Context:
        details = ""

        async def abort(self, code: grpc.StatusCode, details: str) -> None:
            self.details = details
            raise Aborted

    context = Context()
    error = LunbridgeError("mount -o password=Sup3r-S3cret failed")
    with pytest.raises(Aborted):
        await abort(context, error)  # type: ignore[arg-type]
    assert context.details == "mount -o password=*** failed"


def _run(module: str, *args: str, **env: str) -> subprocess.CompletedProcess[str]:
    clean = {k: v for k, v in os.environ.items() if not k.startswith("LUNBRIDGE_")}
    return subprocess.run(
        [sys.executable, "-m", module, *args], env={**clean, **env}, capture_output=True, text=True,
        timeout=60,
    )  # fmt: skip


def test_the_operator_refuses_a_url_with_user_info_in_one_line_without_the_password(tmp_path: Path) -> None:
    result = _run(
        "lunbridge_operator",
        LUNBRIDGE_VSPHERE_URL="https://admin:Sup3r-S3cret@vc.example:99999/sdk",
        LUNBRIDGE_VSPHERE_USER="svc",
        LUNBRIDGE_VSPHERE_PASSWORD="Env-Pa55word",
        LUNBRIDGE_TGT_PORTAL="127.0.0.1:3260",
        LUNBRIDGE_TGT_CONTROL_PORT="7",
        LUNBRIDGE_TGT_POOL_DIR=str(tmp_path),
        LUNBRIDGE_METRICS_PORT="0",
    )
    assert result.returncode == 2, result.stderr
    assert "carries a user name or password" in result.stderr
    for secret in (SECRET, "Env-Pa55word"):
        assert secret not in result.stdout + result.stderr


def test_the_csi_plugin_refuses_an_endpoint_without_showing_its_password() -> None:
    result = _run("lunbridge_csi", "--mode", "controller", "--endpoint", f"tcp://admin:{SECRET}@127.0.0.1:x")
    assert result.returncode == 2
    assert "expected tcp://host:port" in result.stderr
    assert SECRET not in result.stderr


# -- the log filter ------------------------------------------------------------------------


@pytest.fixture
def logged() -> Iterator[tuple[logging.Logger, io.StringIO]]:
    """A logger with a plain handler of its own, the filter installed on it."""
    stream = io.StringIO()
    handler = logging.StreamHandler(stream)
    handler.setFormatter(logging.Formatter("%(levelname)s %(message)s"))
    logger = logging.getLogger("lunbridge.test_redact")
    logger.addHandler(handler)
    logger.setLevel(logging.DEBUG)
    logger.propagate = False
    installed = redact.install_log_filter()
    yield logger, stream
    logger.removeHandler(handler)
    _uninstall(installed)


def _uninstall(installed: logging.Filter) -> None:
    logging.getLogger().removeFilter(installed)
    handlers = [*logging.getLogger().handlers, logging.lastResort]
    for logger in logging.Logger.manager.loggerDict.values():
        if isinstance(logger, logging.Logger):
            handlers += logger.handlers
    for handler in handlers:
        if handler is not None:
            handler.removeFilter(installed)


def test_the_log_filter_masks_messages_arguments_and_tracebacks(
    logged: tuple[logging.Logger, io.StringIO],
) -> None:
    logger, stream = logged
    logger.info("connecting to %s", "https://admin:Sup3r-S3cret@vc/sdk")
    logger.warning("literal password=Sup3r-S3cret, 100% done")
    try:
        raise RuntimeError("boom with token=Sup3r-S3cret")  # not a LunbridgeError: only the filter
    except RuntimeError:
        logger.exception("handler failed")
    logger.info("nothing secret %d%%", 5)
    text = stream.getvalue()
    assert SECRET not in text
    assert "connecting to https://admin:***@vc/sdk" in text
    assert "literal password=***, 100% done" in text
    assert "RuntimeError: boom with token=***" in text
    assert "Traceback (most recent call last)" in text
    assert "nothing secret 5%" in text


def test_the_log_filter_covers_kopfs_json_lines_and_its_event_poster(
    capsys: pytest.CaptureFixture[str], monkeypatch: pytest.MonkeyPatch
) -> None:
    root = logging.getLogger()
    asyncio_logger = logging.getLogger("asyncio")
    saved = (root.level, list(root.handlers), asyncio_logger.propagate, list(asyncio_logger.handlers))
    try:
        kopf.configure(log_format=kopf.LogFormat.JSON)  # as `lunbridge-operator --log-format json`
        installed = redact.install_log_filter()
        poster = next(
            h for h in logging.getLogger("kopf.objects").handlers if type(h).__name__ == "K8sPoster"
        )
        assert installed in poster.filters
        logger = logging.getLogger("kopf.objects")
        logger.error("Handler failed temporarily: Unavailable: %s", "https://admin:Sup3r-S3cret@vc/sdk")
        try:
            raise ValueError(f"raw {SECRET} password={SECRET}")
        except ValueError:
            redact.register(SECRET)
            logging.getLogger("kopf.reactor").exception("Handler 'x' failed with an exception.")
        lines = [json.loads(line) for line in capsys.readouterr().err.splitlines() if line.startswith("{")]
    finally:
        root.level, root.handlers[:] = saved[0], saved[1]
        asyncio_logger.propagate, asyncio_logger.handlers[:] = saved[2], saved[3]
        _uninstall(redact._FILTER)
    assert len(lines) == 2, lines
    assert SECRET not in json.dumps(lines)
    assert lines[0]["message"] == "Handler failed temporarily: Unavailable: https://admin:***@vc/sdk"
    assert "ValueError: raw *** password=***" in lines[1]["exc_info"]


def test_installing_twice_adds_the_filter_once(logged: tuple[logging.Logger, io.StringIO]) -> None:
    logger, _ = logged
    redact.install_log_filter()
    for handler in logger.handlers:
        assert handler.filters.count(redact._FILTER) == 1
