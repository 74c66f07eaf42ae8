"""The images of `make image` (hack/image/build.sh), built with buildah and no image registry into
the local containers storage: the lunbridge image starts both entry points, holds the node tools
and the libvirt binding, and runs as user 10001 by default; each sidecar image starts its pinned
binary as the user its upstream image uses; the pause image is kubernetes' static pause; every
image is exported as an uncompressed OCI archive that names it. The build runs once for the module
(idempotent: seconds when warm). Each command runs in a working container of its image (`buildah
from` + `buildah run --network=host`, the entrypoint bypassed), removed at the end."""

from __future__ import annotations

import contextlib
import json
import shlex
import subprocess
import tarfile
import tomllib
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import pytest
import yaml

from tests.lab import paths

# a cold build compiles libvirt-python and bootstraps the Debian base: minutes
pytestmark = [pytest.mark.peers, pytest.mark.timeout(1800)]

BUILD = paths.HACK_DIR / "image" / "build.sh"
PREFIX = "localhost/lunbridge"
RUN_TIMEOUT = 60.0
NONROOT = "65532:65532"
PROJECT_VERSION = tomllib.loads((paths.REPO_DIR / "pyproject.toml").read_text())["project"]["version"]


@dataclass(frozen=True)
class Sidecar:
    name: str  # image and binary
    version_key: str  # in hack/versions.env
    args: tuple[str, ...]  # what makes it print and exit 0
    prints_version: bool  # livenessprobe has no --version
    user: str

    def image(self) -> str:
        return f"{PREFIX}/{self.name}:{paths.versions()[self.version_key]}"


SIDECARS = [
    Sidecar("csi-provisioner", "CSI_PROVISIONER_VERSION", ("--version",), True, NONROOT),
    Sidecar("csi-attacher", "CSI_ATTACHER_VERSION", ("--version",), True, NONROOT),
    Sidecar("csi-resizer", "CSI_RESIZER_VERSION", ("--version",), True, NONROOT),
    Sidecar("csi-snapshotter", "EXTERNAL_SNAPSHOTTER_VERSION", ("--version",), True, NONROOT),
    # root: it writes the kubelet's plugin registration folder
    Sidecar("csi-node-driver-registrar", "NODE_DRIVER_REGISTRAR_VERSION", ("--version",), True, "0:0"),
    Sidecar("livenessprobe", "LIVENESSPROBE_VERSION", ("--help",), False, NONROOT),
]

# the node tools and the KVM layer's tools: a command that prints and exits 0, and what it prints
NODE_TOOLS = {
    "mkfs.ext4": (("mkfs.ext4", "-V"), "mke2fs 1.47.0"),
    "mkfs.xfs": (("mkfs.xfs", "-V"), "mkfs.xfs version 6.1.0"),
    "blkid": (("blkid", "--version"), "blkid from util-linux 2.38.1"),
    "sg_inq": (("sg_inq", "--version"), "Version string:"),
    "iscsiadm": (("iscsiadm", "--version"), "iscsiadm version 2.1.8"),
    "tgtadm": (("tgtadm", "--help"), "Linux SCSI Target administration utility, version 1.0.85"),
    "iscsi-inq": (("iscsi-inq", "--help"), "Usage: iscsi-inq"),
    "iscsi-ls": (("iscsi-ls", "--help"), "Usage: iscsi-ls"),
}


@dataclass(frozen=True)
class Ran:
    returncode: int
    output: str  # stdout, then stderr

    def describe(self) -> str:
        return f"exit {self.returncode}:\n{self.output}"


def buildah(*args: str, timeout: float = RUN_TIMEOUT) -> Ran:
    done = subprocess.run(["buildah", *args], capture_output=True, text=True, timeout=timeout, check=False)
    return Ran(done.returncode, done.stdout + done.stderr)


@dataclass(frozen=True)
class Container:
    """A working container of an image; `run` execs a command in it as the image's user."""

    image: str
    id: str

    def run(self, *argv: str) -> Ran:
        return buildah("run", "--network=host", "--", self.id, *argv)


@contextlib.contextmanager
def container(image: str) -> Iterator[Container]:
    made = buildah("from", "--pull=never", "--quiet", image)
    assert made.returncode == 0, made.describe()
    working = Container(image, made.output.strip().splitlines()[-1])
    try:
        yield working
    finally:
        removed = buildah("rm", working.id)
        assert removed.returncode == 0, removed.describe()


def config(image: str) -> dict[str, object]:
    """The image's OCI config (its `config` part: User, Entrypoint, Labels...)."""
    done = buildah("inspect", "--type", "image", image)
    assert done.returncode == 0, done.describe()
    result: dict[str, object] = json.loads(done.output)["OCIv1"]["config"]
    return result


def archive_manifest(archive: Path) -> tuple[str, dict[str, Any]]:
    """The reference name the archive's index gives its one image, and that image's manifest."""
    with tarfile.open(archive) as tar:

        def read(name: str) -> dict[str, Any]:
            member = tar.extractfile(name)
            assert member is not None, f"{name} in {archive}"
            loaded: dict[str, Any] = json.load(member)
            return loaded

        [entry] = read("index.json")["manifests"]
        name: str = entry.get("annotations", {}).get("org.opencontainers.image.ref.name", "")
        return name, read("blobs/" + entry["digest"].replace(":", "/"))


@pytest.fixture(scope="module")
def built() -> str:
    """hack/image/build.sh's table of images (it builds what is missing or changed)."""
    done = subprocess.run([str(BUILD)], capture_output=True, text=True, timeout=1700, check=False)
    assert done.returncode == 0, f"{BUILD} exit {done.returncode}\n{done.stderr[-6000:]}"
    return done.stdout


@pytest.fixture(scope="module")
def main_image(built: str) -> str:
    chart = yaml.safe_load((paths.REPO_DIR / "charts" / "lunbridge" / "Chart.yaml").read_text())
    return f"{PREFIX}/lunbridge:{chart['appVersion']}"


@pytest.fixture(scope="module")
def lunbridge(main_image: str) -> Iterator[Container]:
    with container(main_image) as working:
        yield working


def test_the_build_lists_every_image_it_made(built: str, main_image: str) -> None:
    for image in [main_image, *(sidecar.image() for sidecar in SIDECARS)]:
        assert image in built, built
    assert f"{PREFIX}/pause:" in built, built


def test_the_lunbridge_image_runs_as_10001_with_the_csi_entrypoint(
    lunbridge: Container, main_image: str
) -> None:
    image_config = config(main_image)
    assert image_config["User"] == "10001"
    assert image_config["Entrypoint"] == ["lunbridge-csi"]
    ran = lunbridge.run("id", "-u")
    assert (ran.returncode, ran.output.strip()) == (0, "10001"), ran.describe()


@pytest.mark.parametrize(
    ("argv", "expected"),
    [
        (("lunbridge-csi", "--help"), ["usage: lunbridge-csi", "--mode {controller,node,all}"]),
        (("lunbridge-csi", "--version"), [f"lunbridge-csi {PROJECT_VERSION}"]),
        (("lunbridge-operator", "--help"), ["usage: lunbridge-operator", "lunbridge-operator sweep --help"]),
    ],
    ids=["lunbridge-csi --help", "lunbridge-csi --version", "lunbridge-operator --help"],
)
def test_the_entry_points_start(lunbridge: Container, argv: tuple[str, ...], expected: list[str]) -> None:
    ran = lunbridge.run(*argv)
    assert ran.returncode == 0, ran.describe()
    for text in expected:
        assert text in ran.output, ran.describe()


def test_the_libvirt_binding_loads_against_libvirt0(lunbridge: Container) -> None:
    ran = lunbridge.run("python", "-c", "import libvirt; print(libvirt.getVersion())")
    assert ran.returncode == 0, ran.describe()
    assert int(ran.output.strip()) >= 9_000_000, ran.describe()  # libvirt0 9.0.0 of the apt pin


def test_the_node_tools_are_in_the_image(lunbridge: Container) -> None:
    # one run for all of them (each run in a working container costs a second or two)
    script = "".join(f"echo '>>> {tool}'; {shlex.join(argv)} 2>&1; echo \"<<< $?\"; "
                     for tool, (argv, _) in sorted(NODE_TOOLS.items()))  # fmt: skip
    ran = lunbridge.run("sh", "-c", script)
    assert ran.returncode == 0, ran.describe()
    for tool, (_, expected) in NODE_TOOLS.items():
        assert f">>> {tool}\n" in ran.output, ran.describe()
        section = ran.output.split(f">>> {tool}\n", 1)[1].split("<<< ", 1)
        assert len(section) == 2, ran.describe()
        assert section[1].startswith("0\n"), f"{tool}: {ran.describe()}"
        assert expected in section[0], f"{tool}: {ran.describe()}"


@pytest.mark.parametrize("sidecar", SIDECARS, ids=lambda sidecar: sidecar.name)
def test_each_sidecar_image_runs_its_pinned_binary(built: str, sidecar: Sidecar) -> None:
    version = paths.versions()[sidecar.version_key]
    image_config = config(sidecar.image())
    assert image_config["Entrypoint"] == [f"/{sidecar.name}"]
    assert image_config["User"] == sidecar.user
    labels = image_config["Labels"]
    assert isinstance(labels, dict)
    assert labels["org.opencontainers.image.version"] == version
    with container(sidecar.image()) as working:
        ran = working.run(f"/{sidecar.name}", *sidecar.args)
    assert ran.returncode == 0, ran.describe()
    if sidecar.prints_version:
        assert f"/{sidecar.name} {version}" in ran.output, ran.describe()
    else:
        assert f"Usage of /{sidecar.name}" in ran.output, ran.describe()


def test_the_pause_image_is_the_static_pause_of_kubernetes(built: str) -> None:
    [image] = [line.split()[0] for line in built.splitlines() if line.startswith(f"{PREFIX}/pause:")]
    tag = image.rsplit(":", 1)[1]
    image_config = config(image)
    assert (image_config["Entrypoint"], image_config["User"]) == (["/pause"], "65535:65535")
    with container(image) as working:
        ran = working.run("/pause", "-v")
    assert (ran.returncode, ran.output.strip()) == (0, f"pause.c v{tag}-lunbridge"), ran.describe()


def test_every_image_is_exported_uncompressed_under_its_name(built: str, main_image: str) -> None:
    images = {"lunbridge": main_image} | {sidecar.name: sidecar.image() for sidecar in SIDECARS}
    for line in built.splitlines():
        if line.startswith(f"{PREFIX}/pause:"):
            images["pause"] = line.split()[0]
    for name, image in images.items():
        archive = paths.cache_dir() / "images" / f"{name}.tar"
        assert archive.is_file(), archive
        ref, manifest = archive_manifest(archive)
        assert ref == image, archive
        layers = {layer["mediaType"] for layer in manifest["layers"]}
        assert layers == {"application/vnd.oci.image.layer.v1.tar"}, archive  # none compressed
