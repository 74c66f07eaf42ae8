"""The chart's components and where they run, rendered with the real helm (hack/peers/build-tools.sh):
operator.enabled, controller.enabled and node.enabled each leave out every object of their
component and nothing else (the API server's dry run of those renders: test_chart.py); each
component's pods take hostNetwork (with the DNS policy it needs), a priority class, more
environment variables, and the API server's address for every container (kubernetesService: no
kube-proxy, or a node that cannot reach the `kubernetes` Service); the images may be local
(localhost/lunbridge/..., pullPolicy Never, as hack/image/build.sh names them) and the sidecars'
default tags are hack/versions.env's; the node plugin is wired as a real kubelet needs it
(registration, the kubelet folder, /dev and /sys)."""

from __future__ import annotations

import json
from typing import Any

import pytest
import yaml

from tests.integration.chart.rendering import ALL_VALUES, CHART, by_name, helm, render
from tests.lab import paths
from tests.lab.lab import LabState

COMPONENTS = ("operator", "controller", "node")
WORKLOAD = {"operator": ("Deployment", "lb-lunbridge-operator"),
            "controller": ("Deployment", "lb-lunbridge-controller"),
            "node": ("DaemonSet", "lb-lunbridge-node")}  # fmt: skip
# the sidecars' values → hack/versions.env's keys (hack/image/build.sh builds those versions)
SIDECAR_VERSIONS = {
    "provisioner": "CSI_PROVISIONER_VERSION",
    "attacher": "CSI_ATTACHER_VERSION",
    "resizer": "CSI_RESIZER_VERSION",
    "snapshotter": "EXTERNAL_SNAPSHOTTER_VERSION",
    "nodeDriverRegistrar": "NODE_DRIVER_REGISTRAR_VERSION",
    "livenessProbe": "LIVENESSPROBE_VERSION",
    "healthMonitor": "EXTERNAL_HEALTH_MONITOR_VERSION",
}
LOCAL = ["--set", "image.repository=localhost/lunbridge/lunbridge", "--set", "image.pullPolicy=Never",
         "--set", "sidecars.registry=localhost/lunbridge", "--set", "sidecars.pullPolicy=Never"]  # fmt: skip


def off(*components: str) -> list[str]:
    return [arg for name in components for arg in ("--set", f"{name}.enabled=false")]


def belongs_to(doc: dict[str, Any], component: str) -> bool:
    """The object is the component's: labelled so, or named after it (its RBAC, its policy)."""
    labels: dict[str, str] = doc["metadata"].get("labels", {})
    name: str = doc["metadata"]["name"]
    return labels.get("app.kubernetes.io/component") == component or name.startswith(
        f"lb-lunbridge-{component}"
    )


def pod_spec(documents: list[dict[str, Any]], component: str) -> dict[str, Any]:
    spec: dict[str, Any] = by_name(documents)[WORKLOAD[component]]["spec"]["template"]["spec"]
    return spec


def plugin(documents: list[dict[str, Any]], component: str) -> dict[str, Any]:
    """The component's lunbridge container (the first)."""
    container: dict[str, Any] = pod_spec(documents, component)["containers"][0]
    return container


@pytest.mark.parametrize("values", [[], ["--values", str(ALL_VALUES)]], ids=["defaults", "every-option"])
@pytest.mark.parametrize("component", COMPONENTS)
def test_a_component_switched_off_leaves_out_its_objects_and_nothing_else(
    component: str, values: list[str]
) -> None:
    whole = render(*values)
    assert [doc for doc in whole if belongs_to(doc, component)]
    without = render(*values, *off(component))
    assert [(d["kind"], d["metadata"]["name"]) for d in without if belongs_to(d, component)] == []
    # nothing left names it: no binding to its ServiceAccount, no Secret or ConfigMap only it mounts
    assert f"lb-lunbridge-{component}" not in json.dumps(without)
    kept = [doc for doc in whole if not belongs_to(doc, component)]
    if component == "operator":  # the only reader of the backends ConfigMap and the vCenter Secret
        assert not [doc for doc in without if doc["kind"] in ("ConfigMap", "Secret")]
        kept = [doc for doc in kept if doc["kind"] not in ("ConfigMap", "Secret")]
    assert without == kept  # the others exactly as they were; the CSIDriver and StorageClass stay
    assert {"CSIDriver", "StorageClass"} <= {doc["kind"] for doc in without}
    done = helm("lint", str(CHART), "--strict", *values, *off(component))
    assert done.returncode == 0, done.stdout + done.stderr


def test_a_node_only_release_needs_no_hypervisor_and_says_what_is_left_out(lab: LabState) -> None:
    """A lab's KVM guest: the DaemonSet only; the operator's settings are not asked for."""
    values = [*off("operator", "controller"), "--set", "vsphere.enabled=false"]
    documents = render(*values)
    # no "enable a hypervisor": vsphere and libvirt are both off, and that is the operator's check
    assert {doc["kind"] for doc in documents if doc["kind"] in ("Deployment", "DaemonSet")} == {"DaemonSet"}
    done = helm("install", "lb", str(CHART), "--dry-run=client", "--kubeconfig", str(lab.kubeconfig), *values)
    assert done.returncode == 0, done.stderr
    notes = done.stdout.split("NOTES:", 1)[1]
    assert "Not in this release: operator.enabled=false, controller.enabled=false." in notes, notes
    assert "NOT READY" not in notes  # the Secret and the backends are the operator's, elsewhere


@pytest.mark.parametrize("component", COMPONENTS)
def test_host_network_brings_the_dns_policy_that_still_resolves_cluster_names(component: str) -> None:
    spec = pod_spec(render(), component)
    assert ("hostNetwork" in spec, "dnsPolicy" in spec) == (False, False)
    spec = pod_spec(render("--set", f"{component}.hostNetwork=true"), component)
    assert (spec["hostNetwork"], spec["dnsPolicy"]) == (True, "ClusterFirstWithHostNet")


def test_the_node_takes_the_hosts_network_for_the_hosts_iscsid_too() -> None:
    spec = pod_spec(render("--set", "node.hostIscsi=true"), "node")
    assert (spec["hostNetwork"], spec["dnsPolicy"]) == (True, "ClusterFirstWithHostNet")


def test_priority_classes() -> None:
    documents = render()
    assert pod_spec(documents, "node")["priorityClassName"] == "system-node-critical"
    assert "priorityClassName" not in pod_spec(documents, "operator")
    assert "priorityClassName" not in pod_spec(documents, "controller")
    documents = render("--set", "operator.priorityClassName=lab-high", "--set", "node.priorityClassName=")
    assert pod_spec(documents, "operator")["priorityClassName"] == "lab-high"
    assert "priorityClassName" not in pod_spec(documents, "node")


@pytest.mark.parametrize("component", COMPONENTS)
def test_extra_env_reaches_each_lunbridge_container(component: str) -> None:
    extra = [{"name": "LUNBRIDGE_EXTRA", "value": component},
             {"name": "POD_IP", "valueFrom": {"fieldRef": {"fieldPath": "status.podIP"}}}]  # fmt: skip
    documents = render("--set-json", f"{component}.extraEnv={json.dumps(extra)}")
    env = plugin(documents, component)["env"]
    assert env[-2:] == extra  # after the chart's own
    assert [e for e in plugin(render(), component).get("env", []) if e["name"] == "LUNBRIDGE_EXTRA"] == []
    # the sidecars' environment stays theirs
    for container in pod_spec(documents, component)["containers"][1:]:
        assert "LUNBRIDGE_EXTRA" not in json.dumps(container.get("env", []))


# every container of each component's pod (snapshots on, as by default)
CONTAINERS = {
    "operator": ["operator"],
    "controller": ["csi-plugin", "csi-provisioner", "csi-attacher", "csi-resizer", "csi-snapshotter",
                   "liveness-probe"],
    "node": ["csi-plugin", "node-driver-registrar", "liveness-probe"],
}  # fmt: skip
SERVICE_ENV = ("KUBERNETES_SERVICE_HOST", "KUBERNETES_SERVICE_PORT")


def api_server(component: str, host: str, port: str = "6443") -> list[str]:
    return ["--set", f"{component}.kubernetesService.host={host}",
            "--set-string", f"{component}.kubernetesService.port={port}"]  # fmt: skip


def service_env(container: dict[str, Any]) -> list[dict[str, Any]]:
    return [e for e in container.get("env", []) if e["name"] in SERVICE_ENV]


@pytest.mark.parametrize("component", COMPONENTS)
def test_the_api_servers_address_reaches_every_container_of_the_component(component: str) -> None:
    """Without kube-proxy (or from a host-network node that cannot route to the `kubernetes`
    Service) client-go and the Python kubernetes client read the address from these two."""
    extra = [{"name": "LUNBRIDGE_EXTRA", "value": component}]
    documents = render(
        *api_server(component, "192.0.2.1"), "--set-json", f"{component}.extraEnv={json.dumps(extra)}"
    )
    containers = pod_spec(documents, component)["containers"]
    assert [c["name"] for c in containers] == CONTAINERS[component]
    wanted = [{"name": "KUBERNETES_SERVICE_HOST", "value": "192.0.2.1"},
              {"name": "KUBERNETES_SERVICE_PORT", "value": "6443"}]  # fmt: skip
    for container in containers:
        assert service_env(container) == wanted, container["name"]
    assert plugin(documents, component)["env"][-1:] == extra  # extraEnv stays last
    for other in COMPONENTS:  # the others keep the kubelet's
        if other != component:
            assert [c["name"] for c in pod_spec(documents, other)["containers"] if service_env(c)] == []
    default = render()
    assert [
        c["name"] for name in COMPONENTS for c in pod_spec(default, name)["containers"] if service_env(c)
    ] == []
    assert "env" not in pod_spec(default, "controller")["containers"][1]  # no empty env either


def test_the_api_servers_port_may_be_a_number_or_a_string_of_digits() -> None:
    for how in ("--set", "--set-string"):
        documents = render(
            "--set", "node.kubernetesService.host=192.0.2.1", how, "node.kubernetesService.port=6443"
        )
        for container in pod_spec(documents, "node")["containers"]:
            assert service_env(container)[-1] == {"name": "KUBERNETES_SERVICE_PORT", "value": "6443"}, how


@pytest.mark.parametrize(
    "host",
    ["10.96.0.1", "api.lab.example.invalid", "api.lab.example.invalid.", "fd00:10::1", "::ffff:192.0.2.1"],
)
def test_the_api_servers_host_is_an_address_or_a_dns_name(host: str) -> None:
    documents = render(*api_server("node", host, "443"))
    for container in pod_spec(documents, "node")["containers"]:
        assert {e["name"]: e["value"] for e in service_env(container)} == {
            "KUBERNETES_SERVICE_HOST": host, "KUBERNETES_SERVICE_PORT": "443"}  # fmt: skip


@pytest.mark.parametrize("component", COMPONENTS)
def test_a_host_needs_its_port_and_a_port_its_host(component: str) -> None:
    done = helm("template", "lb", str(CHART), "--set", f"{component}.kubernetesService.host=192.0.2.1")
    assert done.returncode != 0
    assert (f"{component}.kubernetesService.host is set (192.0.2.1): set {component}.kubernetesService.port "
            "too") in done.stderr, done.stderr  # fmt: skip
    for how in ("--set-string", "--set"):  # a string of digits or a number
        done = helm("template", "lb", str(CHART), how, f"{component}.kubernetesService.port=6443")
        assert done.returncode != 0
        assert (f"{component}.kubernetesService.port is set (6443) without {component}.kubernetesService.host"
                in done.stderr), done.stderr  # fmt: skip
    # a component that is off is not asked
    done = helm("template", "lb", str(CHART), "--set", f"{component}.kubernetesService.host=192.0.2.1",
                "--set", f"{component}.enabled=false")  # fmt: skip
    assert done.returncode == 0, done.stderr


def test_every_option_lands_in_every_pod() -> None:
    documents = render("--values", str(ALL_VALUES))
    given = yaml.safe_load(ALL_VALUES.read_text())
    for component in COMPONENTS:
        spec, values = pod_spec(documents, component), given[component]
        assert spec["hostNetwork"] is True, component
        assert spec.get("priorityClassName", "") == values["priorityClassName"], component
        assert plugin(documents, component)["env"][-len(values["extraEnv"]) :] == values["extraEnv"], (
            component
        )
        for key in ("nodeSelector", "tolerations", "affinity"):
            assert spec[key] == values[key], (component, key)
        service = values["kubernetesService"]
        for container in spec["containers"]:
            assert service_env(container) == [
                {"name": "KUBERNETES_SERVICE_HOST", "value": service["host"]},
                {"name": "KUBERNETES_SERVICE_PORT", "value": service["port"]},
            ], (component, container["name"])


def test_the_sidecars_default_tags_are_the_versions_the_lab_builds() -> None:
    versions = paths.versions()
    sidecars = yaml.safe_load((CHART / "values.yaml").read_text())["sidecars"]
    assert {key: sidecars[key]["tag"] for key in SIDECAR_VERSIONS} == {
        key: versions[name] for key, name in SIDECAR_VERSIONS.items()
    }


def test_local_images_are_never_pulled_and_named_as_the_lab_builds_them() -> None:
    """As hack/image/build.sh names them: localhost/lunbridge/lunbridge:<appVersion> and
    localhost/lunbridge/<sidecar>:<hack/versions.env's version> (every optional sidecar on)."""
    documents = render(*LOCAL, "--set", "healthMonitor.enabled=true")
    containers = [c for component in COMPONENTS for c in pod_spec(documents, component)["containers"]]
    assert {c["imagePullPolicy"] for c in containers} == {"Never"}
    app_version = yaml.safe_load((CHART / "Chart.yaml").read_text())["appVersion"]
    versions = paths.versions()
    sidecars = yaml.safe_load((CHART / "values.yaml").read_text())["sidecars"]
    built = {f"localhost/lunbridge/lunbridge:{app_version}"} | {
        f"localhost/lunbridge/{sidecars[key]['image']}:{versions[name]}"
        for key, name in SIDECAR_VERSIONS.items()
    }
    assert {c["image"] for c in containers} == built
    done = helm("lint", str(CHART), "--strict", *LOCAL)
    assert done.returncode == 0, done.stdout + done.stderr


@pytest.mark.parametrize("kubelet", ["/var/lib/kubelet", "/var/lib/k0s/kubelet"])
def test_the_node_plugin_is_wired_for_a_real_kubelet(kubelet: str) -> None:
    spec = pod_spec(render("--set", f"node.kubeletDir={kubelet}"), "node")
    containers = {c["name"]: c for c in spec["containers"]}
    volumes = {v["name"]: v.get("hostPath", {}).get("path") for v in spec["volumes"]}
    plugin_dir = f"{kubelet}/plugins/csi.lunbridge.io"

    def mounts(container: str) -> dict[str, tuple[str | None, str | None]]:
        """mount path → (host path, propagation)"""
        return {m["mountPath"]: (volumes[m["name"]], m.get("mountPropagation"))
                for m in containers[container]["volumeMounts"]}  # fmt: skip

    node = containers["csi-plugin"]
    assert "--endpoint=unix:///csi/csi.sock" in node["args"]
    assert node["securityContext"]["privileged"] is True  # SCSI rescans in /sys, mounts for the kubelet
    wanted = {"/csi": (plugin_dir, None), kubelet: (kubelet, "Bidirectional"), "/dev": ("/dev", None),
              "/sys": ("/sys", None)}  # fmt: skip
    assert mounts("csi-plugin").items() >= wanted.items()
    registrar = containers["node-driver-registrar"]
    assert registrar["args"] == [
        "--csi-address=/csi/csi.sock",
        f"--kubelet-registration-path={plugin_dir}/csi.sock",
    ]
    registration = f"{kubelet}/plugins_registry"  # the kubelet's plugin watcher
    assert mounts("node-driver-registrar") == {
        "/csi": (plugin_dir, None),
        "/registration": (registration, None),
    }
    # the liveness probe asks the livenessprobe sidecar, on node.healthPort
    probe = containers["liveness-probe"]
    assert probe["args"] == ["--csi-address=/csi/csi.sock", "--http-endpoint=:9809"]
    assert node["livenessProbe"]["httpGet"] == {"path": "/healthz", "port": "healthz"}
    assert node["ports"] == [{"name": "healthz", "containerPort": 9809}]
    # both dial the plugin's socket, root's and 0755: as root, whatever user their image names
    assert registrar["securityContext"]["runAsUser"] == probe["securityContext"]["runAsUser"] == 0
