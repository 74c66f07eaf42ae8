"""hypothesis strategies of VirtualDisk and InitiatorGroup manifests that mix valid and invalid
values field by field. Each draws a `Case`: the manifest, and the paths of the fields it made
bad on purpose (with the words a refusal may use to name each), so a check can tell whether a
refusal named the field and whether a valid manifest was refused."""

from __future__ import annotations

import uuid
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from typing import Any

from hypothesis import HealthCheck, Phase, settings
from hypothesis import strategies as st

from lunbridge.api import API_VERSION

MISSING = object()  # a field left out of the manifest
TEST_LABEL = "lunbridge.io/test"
LONG = "a" * 300
UNICODE = "diskü-ñ"

# a bad value of one field, and the words (beside the field's path) that name it in a refusal
Bad = tuple[Any, tuple[str, ...]]


def generated(examples: int) -> settings:
    """Few examples, the same ones on every run (CI reproduces a failure), no shrinking."""
    return settings(
        max_examples=examples,
        deadline=None,
        derandomize=True,
        database=None,
        phases=[Phase.explicit, Phase.generate],
        suppress_health_check=list(HealthCheck),
    )


@dataclass
class Case:
    kind: str
    manifest: dict[str, Any]
    planted: dict[str, tuple[str, ...]] = field(default_factory=dict)  # path -> words naming it

    @property
    def name(self) -> str:
        return str(self.manifest.get("metadata", {}).get("name", ""))

    def names_a_planted_field(self, text: str) -> bool:
        return any(path in text or any(w in text for w in words) for path, words in self.planted.items())

    def describe(self) -> str:
        return f"{self.kind} {self.manifest!r} (planted: {sorted(self.planted) or 'nothing'})"


Choice = tuple[st.SearchStrategy[Any], list[Bad]]


def _choice(valid: Sequence[Any], bad: Sequence[Bad]) -> Choice:
    """A field: its valid values (MISSING among them: left out) and its bad ones."""
    return st.sampled_from([MISSING, *valid]), list(bad)


def _name(kind: str) -> st.SearchStrategy[tuple[str, tuple[str, ...] | None]]:
    """The object name: mostly a fresh valid one; else empty, unicode, upper case, too long."""
    fresh = st.builds(lambda: (f"gen-{kind}-{uuid.uuid4().hex[:8]}", None))
    odd = st.sampled_from(["", UNICODE, "Gen-Upper", "a_b", "-lead", "x" * 254]).map(lambda n: (n, ("name",)))
    # valid for the API server but long: what a storage server may not take as a name
    # valid for the API server but long: a storage server may not take it for an igroup's name
    long_words = ("metadata.name",) if kind == "ig" else None
    long_ok = st.builds(lambda: (f"gen-{kind}-{uuid.uuid4().hex[:8]}-" + "l" * 60, long_words))
    return st.one_of(fresh, fresh, fresh, fresh, fresh, fresh, odd, long_ok)


def _meta(name: str, test_id: str) -> dict[str, Any]:
    return {"name": name, "labels": {TEST_LABEL: test_id}}


@st.composite
def _fields(
    draw: Callable[..., Any], table: dict[str, Choice]
) -> tuple[dict[str, Any], dict[str, tuple[str, ...]]]:
    """A spec whose fields are valid (or left out) but for none, one or two made bad."""
    keys = [key for key, (_, bad) in table.items() if bad]
    spoilt = draw(st.lists(st.sampled_from(keys), max_size=2, unique=True))
    spec: dict[str, Any] = {}
    planted: dict[str, tuple[str, ...]] = {}
    for key, (valid, bad) in table.items():
        if key in spoilt:
            value, words = draw(st.sampled_from(bad))
            planted[f"spec.{key}"] = words
        else:
            value = draw(valid)
        if value is not MISSING:
            spec[key] = value
    return spec, planted


def virtual_disks(test_id: str, missing_node: str) -> st.SearchStrategy[Case]:
    """VirtualDisk manifests (never attached to a real node: nodeName is absent, empty, a Node
    that does not exist or not a node name)."""
    sizes = _choice(
        ["1Mi", "64Mi", 16 << 20, "1.5Mi", "100M"],
        [
            ("0", ("size",)),
            ("1Ki", ("size",)),
            ("65Ti", ("size",)),
            ("-1Gi", ("size",)),
            ("ten gigs", ("size",)),
            ("", ("size",)),
            (1.5, ("size",)),
            (True, ("size",)),
            (["1Gi"], ("size",)),
            (MISSING, ("size", "spec")),
        ],
    )
    table = {
        "size": (st.sampled_from(["1Mi", "64Mi", 16 << 20, "1.5Mi", "100M"]), sizes[1]),
        "backend": _choice(
            ["tgt"],
            [("nope", ("backend",)), ("b" * 64, ("backend",)), (UNICODE, ("backend",)), (7, ("backend",))],
        ),
        "pool": _choice(
            ["default"],
            [
                ("nope", ("pool",)),
                ("", ("pool",)),
                ("../etc", ("pool",)),
                ("p" * 254, ("pool",)),
                (UNICODE, ("pool",)),
            ],
        ),
        "fsType": _choice(["ext4", "xfs"], [("btrfs", ("fsType",)), ("EXT4", ("fsType",)), (4, ("fsType",))]),
        "volumeMode": _choice(["Filesystem", "Block"], [("block", ("volumeMode",)), ("", ("volumeMode",))]),
        "nodeName": _choice(
            [""],
            [
                (missing_node, ("nodeName",)),
                ("Bad_Node", ("nodeName",)),
                (UNICODE, ("nodeName",)),
                ("n" * 254, ("nodeName",)),
                (3, ("nodeName",)),
            ],
        ),
        "scope": _choice(["host", "cluster"], [("rack", ("scope",)), ("", ("scope",))]),
        "source": _choice(
            [{}],
            [
                ({"snapshot": "gen-no-such-snapshot"}, ("source.snapshot", "snapshot")),
                ({"snapshot": "Bad Snapshot ü"}, ("source.snapshot", "snapshot")),
                ({"virtualDisk": "gen-no-such-disk"}, ("source.virtualDisk", "virtualDisk")),
                ({"virtualDisk": "Bad Disk ü"}, ("source.virtualDisk", "virtualDisk")),
                ({"snapshot": "s", "virtualDisk": "v"}, ("source",)),
                ({"virtualDisk": 5}, ("source.virtualDisk", "virtualDisk")),
                ({"clone": "x"}, ("source.clone", "clone")),
                ("gen-disk", ("source",)),
            ],
        ),
        "reclaimPolicy": _choice(["Delete", "Retain"], [("Keep", ("reclaimPolicy",))]),
        "colour": _choice([], [("blue", ("colour",))]),  # a field the CRD does not know
    }

    @st.composite
    def build(draw: Callable[..., Any]) -> Case:
        name, name_words = draw(_name("vd"))
        spec, planted = draw(_fields(table))
        if "size" not in spec:
            planted["spec.size"] = ("size", "spec")
        if name_words is not None:
            planted["metadata.name"] = name_words
        manifest: dict[str, Any] = {
            "apiVersion": API_VERSION,
            "kind": "VirtualDisk",
            "metadata": _meta(name, test_id),
            "spec": spec,
        }
        shape = draw(st.sampled_from(["spec"] * 12 + ["no-spec", "spec-string"]))
        if shape == "no-spec":
            del manifest["spec"]
            planted = {"spec": ("spec",), **({"metadata.name": name_words} if name_words else {})}
        elif shape == "spec-string":
            manifest["spec"] = "64Mi"
            planted = {"spec": ("spec",), **({"metadata.name": name_words} if name_words else {})}
        return Case("VirtualDisk", manifest, planted)

    return build()


def initiator_groups(
    test_id: str, hosts: Sequence[str], nodes: Sequence[str], missing_node: str
) -> st.SearchStrategy[Case]:
    """InitiatorGroup manifests over the lab's hosts and Nodes (and ones that do not exist)."""
    host_lists = _choice(
        [[hosts[0]], list(hosts[:2])],
        [
            (["gen-no-such-host"], ("hosts",)),
            ([""], ("hosts",)),
            ([hosts[0], hosts[0]], ("hosts",)),
            (["h" * 254], ("hosts",)),
            ("one-host", ("hosts",)),
            ([], ("hosts",)),
        ],
    )
    node_lists = _choice(
        [[nodes[0]]],
        [
            ([missing_node], ("nodeNames",)),
            ([UNICODE], ("nodeNames",)),
            ([7], ("nodeNames",)),
            ([], ("nodeNames",)),
        ],
    )
    table = {
        "hosts": host_lists,
        "nodeNames": node_lists,
        "protocol": _choice(
            ["iscsi"], [("fcp", ("protocol",)), ("nvme", ("protocol",)), ("", ("protocol",))]
        ),
        "scope": _choice(["host", "cluster"], [("rack", ("scope",))]),
        "osType": _choice(["vmware", "linux"], [("solaris", ("osType",))]),
        "backend": _choice(["tgt"], [("nope", ("backend",)), ("b" * 64, ("backend",))]),
        "size": _choice([], [("1Gi", ("size",))]),  # a field the CRD does not know
    }

    @st.composite
    def build(draw: Callable[..., Any]) -> Case:
        name, name_words = draw(_name("ig"))
        spec, planted = draw(_fields(table))
        if "hosts" not in spec and "nodeNames" not in spec:
            planted["spec.hosts"] = ("hosts", "nodeNames")
        if name_words is not None:
            planted["metadata.name"] = name_words
        manifest = {
            "apiVersion": API_VERSION,
            "kind": "InitiatorGroup",
            "metadata": _meta(name, test_id),
            "spec": spec,
        }
        return Case("InitiatorGroup", manifest, planted)

    return build()
