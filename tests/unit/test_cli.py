"""Both console scripts exist and document themselves; the operator refuses to start without its
settings; the CSI plugin refuses a bad endpoint, serves on a unix socket (removing a stale one)
and stops cleanly on SIGTERM."""

from __future__ import annotations

import os
import signal
import socket
import subprocess
import sys
from pathlib import Path

import grpc
import pytest

from lunbridge_csi._proto import csi_pb2, csi_pb2_grpc


@pytest.mark.parametrize(
    ("module", "expected"),
    [("lunbridge_operator", "--vsphere-url"), ("lunbridge_csi", "--mode {controller,node,all}")],
)
def test_help_describes_options(module: str, expected: str) -> None:
    result = subprocess.run([sys.executable, "-m", module, "--help"], capture_output=True, text=True)
    assert result.returncode == 0
    assert expected in result.stdout


@pytest.mark.parametrize("args", [["--help"], ["sweep", "--help"]], ids=["operator", "sweep"])
def test_help_with_a_wrong_number_in_the_environment_names_it(args: list[str]) -> None:
    env = {**os.environ, "LUNBRIDGE_DISK_SLOTS": "many"}
    result = subprocess.run(
        [sys.executable, "-m", "lunbridge_operator", *args], capture_output=True, text=True, env=env
    )
    assert result.returncode == 2, result.stderr
    assert "LUNBRIDGE_DISK_SLOTS must be a number, not 'many'" in result.stderr
    assert "Traceback" not in result.stderr


def test_csi_refuses_a_bad_endpoint() -> None:
    result = subprocess.run(
        [sys.executable, "-m", "lunbridge_csi", "--mode", "controller", "--endpoint", "http://x"],
        capture_output=True,
        text=True,
    )
    assert result.returncode == 2
    assert "expected unix:///path or tcp://host:port" in result.stderr


def test_csi_controller_without_kubernetes_configuration_says_so(tmp_path: Path) -> None:
    env = {**os.environ, "KUBECONFIG": str(tmp_path / "missing")}
    result = subprocess.run(
        [sys.executable, "-m", "lunbridge_csi", "--mode", "controller", "--endpoint",
         f"unix://{tmp_path}/csi.sock"],
        capture_output=True, text=True, env=env, timeout=60,
    )  # fmt: skip
    assert result.returncode == 2
    assert "cannot load a Kubernetes configuration" in result.stderr


def test_csi_controller_serves_identity_on_a_unix_socket_and_stops_on_sigterm(tmp_path: Path) -> None:
    kubeconfig = tmp_path / "kubeconfig"
    kubeconfig.write_text(KUBECONFIG_NOWHERE)
    sock = tmp_path / "csi" / "csi.sock"
    sock.parent.mkdir()
    stale = socket.socket(socket.AF_UNIX)
    stale.bind(str(sock))  # a socket left behind by an earlier run
    stale.close()
    env = {**os.environ, "KUBECONFIG": str(kubeconfig)}
    process = subprocess.Popen(
        [sys.executable, "-m", "lunbridge_csi", "--mode", "controller", "--endpoint", f"unix://{sock}"],
        stderr=subprocess.PIPE, text=True, env=env,
    )  # fmt: skip
    try:
        with grpc.insecure_channel(f"unix://{sock}") as channel:
            grpc.channel_ready_future(channel).result(timeout=30)
            identity = csi_pb2_grpc.IdentityStub(channel)  # type: ignore[no-untyped-call]
            info = identity.GetPluginInfo(csi_pb2.GetPluginInfoRequest(), timeout=10)
            assert info.name == "csi.lunbridge.io"
            # the API server cannot be reached: alive, but not ready
            assert identity.Probe(csi_pb2.ProbeRequest(), timeout=30).ready.value is False
            kinds = identity.GetPluginCapabilities(csi_pb2.GetPluginCapabilitiesRequest(), timeout=10)
            assert [c.service.type for c in kinds.capabilities] == [
                csi_pb2.PluginCapability.Service.CONTROLLER_SERVICE,
                csi_pb2.PluginCapability.Service.GROUP_CONTROLLER_SERVICE,
            ]
    finally:
        process.send_signal(signal.SIGTERM)
        _, stderr = process.communicate(timeout=30)
    assert process.returncode == 0, stderr
    assert "stopped" in stderr
    assert not sock.exists()


KUBECONFIG_NOWHERE = """apiVersion: v1
kind: Config
clusters: [{name: c, cluster: {server: "https://127.0.0.1:9"}}]
users: [{name: u, user: {token: t}}]
contexts: [{name: x, context: {cluster: c, user: u}}]
current-context: x
"""


def test_operator_without_settings_names_what_is_missing() -> None:
    env = {k: v for k, v in os.environ.items() if not k.startswith("LUNBRIDGE_")}
    result = subprocess.run(
        [sys.executable, "-m", "lunbridge_operator"], capture_output=True, text=True, env=env
    )
    assert result.returncode == 2
    assert "set LUNBRIDGE_VSPHERE_URL (--vsphere-url)" in result.stderr


def test_csi_rejects_unknown_mode() -> None:
    result = subprocess.run(
        [sys.executable, "-m", "lunbridge_csi", "--mode", "sideways"], capture_output=True, text=True
    )
    assert result.returncode == 2
    assert "invalid choice: 'sideways'" in result.stderr


SLOW_CLIENT = """import sys, time


class SlowClient:
    '''The Kubernetes client as it loads on a small VM: the node channel's import takes minutes.'''

    def find_spec(self, name, path=None, target=None):
        if name == "lunbridge_csi.channel_kube":
            print("loading the client", file=sys.stderr, flush=True)
            time.sleep(300)
        return None


sys.meta_path.insert(0, SlowClient())
"""


def test_csi_node_stops_on_sigterm_while_its_kubernetes_client_still_loads(tmp_path: Path) -> None:
    (tmp_path / "sitecustomize.py").write_text(SLOW_CLIENT)
    kubeconfig = tmp_path / "kubeconfig"
    kubeconfig.write_text(KUBECONFIG_NOWHERE)
    sock = tmp_path / "csi.sock"
    env = {**os.environ, "KUBECONFIG": str(kubeconfig),
           "PYTHONPATH": os.pathsep.join([str(tmp_path), *sys.path])}  # fmt: skip
    process = subprocess.Popen(
        [sys.executable, "-m", "lunbridge_csi", "--mode", "node", "--node-name", "n1",
         "--endpoint", f"unix://{sock}"],
        stderr=subprocess.PIPE, text=True, env=env,
    )  # fmt: skip
    assert process.stderr is not None
    try:
        lines: list[str] = []
        while "loading the client" not in (line := process.stderr.readline()):
            assert line, "".join(lines)  # the plugin exited before it loaded the client
            lines.append(line)
    finally:
        process.send_signal(signal.SIGTERM)
    _, stderr = process.communicate(timeout=20)  # not the 300 s the client takes to load
    assert process.returncode == 0, stderr
    assert "stopped" in stderr
