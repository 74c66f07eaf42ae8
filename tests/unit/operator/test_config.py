"""The operator refuses to start on missing or wrong settings, naming the setting and never a
secret's value; complete settings give a checked configuration."""

from __future__ import annotations

import json
import os
from pathlib import Path

import pytest

from lunbridge.hypervisor.base import Scope
from lunbridge.san import Transport
from lunbridge.storage.tgt import TgtConfig
from lunbridge_operator.config import ConfigError, load

BASE = {
    "LUNBRIDGE_VSPHERE_URL": "https://vc.example.test/sdk",
    "LUNBRIDGE_VSPHERE_USER": "svc-lunbridge@vsphere.local",
    "LUNBRIDGE_VSPHERE_PASSWORD": "s3cret-Passw0rd",
    "LUNBRIDGE_VSPHERE_THUMBPRINT": "AB" * 32,
    "LUNBRIDGE_TGT_PORTAL": "127.0.0.1:3260",
    "LUNBRIDGE_TGT_CONTROL_PORT": "7",
}


@pytest.fixture
def env(monkeypatch: pytest.MonkeyPatch, tmp_path: Path) -> dict[str, str]:
    for key in list(os.environ):
        if key.startswith("LUNBRIDGE_"):
            monkeypatch.delenv(key)
    values = {**BASE, "LUNBRIDGE_TGT_POOL_DIR": str(tmp_path / "pool")}
    for key, value in values.items():
        monkeypatch.setenv(key, value)
    return values


def test_complete_environment_loads(env: dict[str, str]) -> None:
    config = load([])
    assert config.vsphere is not None
    assert config.libvirt is None
    assert config.vsphere.url == "https://vc.example.test:443/sdk"
    assert config.vsphere.thumbprint is not None
    [backend] = config.backends
    assert (backend.name, backend.type, backend.default) == ("tgt", "tgt", True)
    tgt = TgtConfig.from_settings(backend.settings)
    assert tgt.control == 7
    assert tgt.state_file == Path(env["LUNBRIDGE_TGT_POOL_DIR"]) / "tgt-state.json"
    assert config.transport is Transport.ISCSI
    assert config.default_scope is None
    assert env["LUNBRIDGE_VSPHERE_PASSWORD"] not in repr(config)


def test_flags_override_environment(env: dict[str, str]) -> None:
    config = load(["--default-scope", "host", "--tgt-control-port", "9", "--standalone"])
    control = TgtConfig.from_settings(config.backends[0].settings).control
    assert (config.default_scope, control, config.standalone) == (Scope.HOST, 9, True)


@pytest.mark.parametrize(
    ("missing", "named"),
    [
        ("LUNBRIDGE_VSPHERE_URL", "LUNBRIDGE_VSPHERE_URL (--vsphere-url)"),
        ("LUNBRIDGE_VSPHERE_PASSWORD", "LUNBRIDGE_VSPHERE_PASSWORD"),
        ("LUNBRIDGE_TGT_PORTAL", "LUNBRIDGE_TGT_PORTAL (--tgt-portal)"),
        ("LUNBRIDGE_TGT_POOL_DIR", "LUNBRIDGE_TGT_POOL_DIR (--tgt-pool-dir)"),
    ],
)
def test_missing_setting_is_named(
    env: dict[str, str], monkeypatch: pytest.MonkeyPatch, missing: str, named: str
) -> None:
    monkeypatch.delenv(missing)
    with pytest.raises(ConfigError, match=named.replace("(", r"\(").replace(")", r"\)")):
        load([])


def test_bad_values_are_explained_without_secrets(
    env: dict[str, str], monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setenv("LUNBRIDGE_TGT_CONTROL_PORT", "seven")
    with pytest.raises(ConfigError, match="controlPort must be a number, not 'seven'"):
        load([])
    monkeypatch.setenv("LUNBRIDGE_TGT_CONTROL_PORT", "7")
    monkeypatch.setenv("LUNBRIDGE_VSPHERE_INSECURE", "true")
    with pytest.raises(ConfigError, match="insecure") as caught:
        load([])
    assert env["LUNBRIDGE_VSPHERE_PASSWORD"] not in str(caught.value)


def test_credentials_folder_like_a_mounted_secret(env: dict[str, str], monkeypatch: pytest.MonkeyPatch,
                                                  tmp_path: Path) -> None:  # fmt: skip
    for key in ("LUNBRIDGE_VSPHERE_URL", "LUNBRIDGE_VSPHERE_USER", "LUNBRIDGE_VSPHERE_PASSWORD"):
        monkeypatch.delenv(key)
    secret = tmp_path / "secret"
    secret.mkdir()
    (secret / "url").write_text("https://vc2.example.test/sdk")
    (secret / "username").write_text("robot")
    (secret / "password").write_text("from-the-secret\n")
    config = load(["--vsphere-credentials", str(secret)])
    assert config.vsphere is not None
    assert (config.vsphere.url, config.vsphere.username, config.vsphere.password) == (
        "https://vc2.example.test:443/sdk", "robot", "from-the-secret")  # fmt: skip
    with pytest.raises(ConfigError, match="no such folder"):
        load(["--vsphere-credentials", str(tmp_path / "absent")])


def test_a_kvm_host_alone_is_enough(env: dict[str, str], monkeypatch: pytest.MonkeyPatch) -> None:
    for key in ("LUNBRIDGE_VSPHERE_URL", "LUNBRIDGE_VSPHERE_USER", "LUNBRIDGE_VSPHERE_PASSWORD"):
        monkeypatch.delenv(key)
    monkeypatch.setenv("LUNBRIDGE_LIBVIRT_URI", "qemu:///system")
    monkeypatch.setenv("LUNBRIDGE_HOST_IQN", "iqn.2024-01.test:kvm1")
    config = load([])
    assert config.vsphere is None
    assert config.libvirt is not None
    assert config.libvirt.host_iqn == "iqn.2024-01.test:kvm1"
    monkeypatch.delenv("LUNBRIDGE_HOST_IQN")
    with pytest.raises(ConfigError, match="LUNBRIDGE_HOST_IQN"):
        load([])


def _backends_file(tmp_path: Path, text: str) -> str:
    path = tmp_path / "backends.yaml"
    path.write_text(text)
    return str(path)


def test_a_backends_file_names_several_backends_and_the_default(
    env: dict[str, str], monkeypatch: pytest.MonkeyPatch, tmp_path: Path
) -> None:
    for key in ("LUNBRIDGE_TGT_PORTAL", "LUNBRIDGE_TGT_CONTROL_PORT", "LUNBRIDGE_TGT_POOL_DIR"):
        monkeypatch.delenv(key)
    path = _backends_file(
        tmp_path,
        f"""
backends:
  - name: fast
    type: tgt
    settings: {{portal: "127.0.0.1:3260", controlPort: 3, poolDir: {tmp_path / "fast"}}}
  - name: bulk
    type: tgt
    default: true
    settings: {{portal: "127.0.0.1:3261", controlPort: 4, pools: {{gold: {tmp_path / "gold"}}}}}
""",
    )
    config = load(["--backends-file", path])
    assert [(b.name, b.default) for b in config.backends] == [("fast", False), ("bulk", True)]
    assert TgtConfig.from_settings(config.backends[1].settings).pool_names == ("gold",)


@pytest.mark.parametrize(
    ("text", "named"),
    [
        ("backends: []", "backends must be a non-empty list"),
        ("backends: [{name: a, type: ontapp}]", r"backends\[0\].type 'ontapp' is not one of ontap, tgt"),
        ("backends: [{name: A_b, type: tgt}]", r"backends\[0\].name 'A_b' must be a DNS label"),
        ("backends: [{name: a, type: tgt, setting: {}}]", r"backends\[0\] has unknown keys setting"),
        ("backends: [{name: a, type: tgt, settings: {portal: 'x:1', controlPort: 1, poolDir: /p}},"
         " {name: a, type: tgt}]", r"backends\[1\].name 'a' is used twice"),
        ("backends: [{name: a, type: tgt, settings: {portal: 'x:1', poolDir: /p}}]",
         "backend a settings lacks controlPort"),
        ("backends: [{name: a, type: tgt, settings: {portal: 'x:1', controlPort: one, poolDir: /p}}]",
         "backend a settings.controlPort must be a number, not 'one'"),
        ("backends: [{", "is not YAML or JSON"),
    ],
)  # fmt: skip
def test_a_bad_backends_file_names_the_field(
    env: dict[str, str], monkeypatch: pytest.MonkeyPatch, tmp_path: Path, text: str, named: str
) -> None:
    for key in ("LUNBRIDGE_TGT_PORTAL", "LUNBRIDGE_TGT_CONTROL_PORT", "LUNBRIDGE_TGT_POOL_DIR"):
        monkeypatch.delenv(key)
    with pytest.raises(ConfigError, match=named):
        load(["--backends-file", _backends_file(tmp_path, text)])


def test_a_backends_file_and_the_tgt_settings_together_are_refused(
    env: dict[str, str], tmp_path: Path
) -> None:
    path = _backends_file(tmp_path, "backends: [{name: a, type: tgt}]")
    with pytest.raises(ConfigError, match="both --backends-file and LUNBRIDGE_TGT_"):
        load(["--backends-file", path])


def test_the_orphan_sweep_interval_comes_from_the_flag_or_the_environment(
    env: dict[str, str], monkeypatch: pytest.MonkeyPatch
) -> None:
    assert load([]).sweep_seconds == 600.0
    assert load(["--sweep-seconds", "0"]).sweep_seconds == 0.0
    monkeypatch.setenv("LUNBRIDGE_SWEEP_SECONDS", "30")
    assert load([]).sweep_seconds == 30.0
    monkeypatch.setenv("LUNBRIDGE_SWEEP_SECONDS", "soon")
    with pytest.raises(ConfigError, match="LUNBRIDGE_SWEEP_SECONDS must be a number, not 'soon'"):
        load([])
    monkeypatch.setenv("LUNBRIDGE_SWEEP_SECONDS", "-1")
    with pytest.raises(ConfigError, match="--sweep-seconds must be a number of seconds >= 0"):
        load([])


def test_the_disk_slots_come_from_the_flag_or_the_environment_and_are_positive(
    env: dict[str, str], monkeypatch: pytest.MonkeyPatch
) -> None:
    assert load([]).disk_slots == 256
    assert load(["--disk-slots", "4"]).disk_slots == 4
    monkeypatch.setenv("LUNBRIDGE_DISK_SLOTS", "16")
    assert load([]).disk_slots == 16
    monkeypatch.setenv("LUNBRIDGE_DISK_SLOTS", "many")
    with pytest.raises(ConfigError, match="LUNBRIDGE_DISK_SLOTS must be a number, not 'many'"):
        load([])
    monkeypatch.setenv("LUNBRIDGE_DISK_SLOTS", "0")
    with pytest.raises(ConfigError, match="--disk-slots must be a number > 0, not 0"):
        load([])


def test_the_api_connections_come_from_the_flag_or_the_environment_and_are_positive(
    env: dict[str, str], monkeypatch: pytest.MonkeyPatch
) -> None:
    assert load([]).api_connections == 64
    assert load(["--api-connections", "8"]).api_connections == 8
    monkeypatch.setenv("LUNBRIDGE_API_CONNECTIONS", "0")
    with pytest.raises(ConfigError, match="--api-connections must be a number > 0, not 0"):
        load([])


def test_the_retry_scale_comes_from_the_flag_or_the_environment_and_is_positive(
    env: dict[str, str], monkeypatch: pytest.MonkeyPatch
) -> None:
    assert load([]).retry_scale == 1.0
    assert load(["--retry-scale", "0.2"]).retry_scale == 0.2
    monkeypatch.setenv("LUNBRIDGE_RETRY_SCALE", "0")
    with pytest.raises(ConfigError, match=r"--retry-scale must be a number > 0, not 0\.0"):
        load([])


def test_a_backend_whose_chap_secret_is_unusable_stops_the_start(
    env: dict[str, str], monkeypatch: pytest.MonkeyPatch, tmp_path: Path
) -> None:
    for key in ("LUNBRIDGE_TGT_PORTAL", "LUNBRIDGE_TGT_CONTROL_PORT", "LUNBRIDGE_TGT_POOL_DIR"):
        monkeypatch.delenv(key, raising=False)
    chap_dir = tmp_path / "chap"
    chap_dir.mkdir()
    (chap_dir / "node.session.auth.username").write_text("node-user")
    (chap_dir / "node.session.auth.password").write_text("short")
    backends = tmp_path / "backends.yaml"
    backends.write_text(json.dumps({"backends": [{"name": "san", "type": "tgt", "chapDir": str(chap_dir),
                                                  "settings": {"portal": "127.0.0.1:3260", "controlPort": 1,
                                                               "poolDir": str(tmp_path)}}]}))  # fmt: skip
    with pytest.raises(
        ConfigError, match=r"node\.session\.auth\.password must be at least 12 bytes"
    ) as refused:
        load(["--backends-file", str(backends)])
    assert "short" not in str(refused.value)
    (chap_dir / "node.session.auth.password").write_text("a-long-secret-1\n")
    assert load(["--backends-file", str(backends)]).backends[0].chap_dir == chap_dir
