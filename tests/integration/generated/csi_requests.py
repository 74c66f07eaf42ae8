"""hypothesis strategies of malformed CSI requests: a well-formed request of one method with
one or two of its fields made bad (empty or odd ids, bad capabilities, capacity ranges,
parameters, publish contexts, paths). Each draws a `Call`: the method, the request, and the
fields made bad with the words that name each in a refusal."""

from __future__ import annotations

import uuid
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

from hypothesis import strategies as st

from lunbridge_csi._proto import csi_pb2

Mode = csi_pb2.VolumeCapability.AccessMode.Mode
ODD_IDS = (".", "..", "a/b", "ü-vol", "v" * 300, "a\x00b", "%2e%2e", " ", "-")
NAA = "naa.6001405" + "0" * 25


def capability(
    kind: str = "mount", fs_type: str = "ext4", mode: int = Mode.SINGLE_NODE_WRITER, access: bool = True
) -> csi_pb2.VolumeCapability:
    made = csi_pb2.VolumeCapability()
    if kind == "mount":
        made.mount.fs_type = fs_type
    elif kind == "block":
        made.block.SetInParent()
    if access:
        made.access_mode.mode = mode  # type: ignore[assignment]
    return made


BAD_CAPABILITIES = {
    "no access_mode": capability(access=False),
    "no access_type": capability(kind="none"),
    "access mode UNKNOWN": capability(mode=Mode.UNKNOWN),
    "fs_type btrfs": capability(fs_type="btrfs"),
    "fs_type unicode": capability(fs_type="ext4ü"),
}
# words a refusal of a bad capability may use
CAPABILITY_WORDS = ("volume_capabilit", "access_mode", "access_type", "fs_type", "fsType")


@dataclass(frozen=True)
class Bad:
    """One field made bad: how it changes the request's fields, and the words naming it."""

    what: str
    change: Callable[[dict[str, Any]], None]
    words: tuple[str, ...]
    odd_only: bool = False  # an odd but well-formed id: an idempotent call may answer OK


@dataclass(frozen=True)
class Call:
    method: str
    request: Any
    bad: tuple[Bad, ...]
    ok_allowed: bool  # an idempotent call with only odd ids may succeed

    def describe(self) -> str:
        return f"{self.method}({self.request!r}) with {', '.join(b.what for b in self.bad)}"

    def names_a_bad_field(self, text: str) -> bool:
        return any(any(w in text for w in b.words) for b in self.bad)


def _set(key: str, value: Any) -> Callable[[dict[str, Any]], None]:
    def change(fields: dict[str, Any]) -> None:
        fields[key] = value

    return change


def _drop(key: str) -> Callable[[dict[str, Any]], None]:
    def change(fields: dict[str, Any]) -> None:
        fields.pop(key, None)

    return change


def _ids(key: str, idempotent: bool) -> list[Bad]:
    found = [Bad(f"{key} empty", _set(key, ""), (key,))]
    found += [Bad(f"{key} {odd!r}", _set(key, odd), (key,), odd_only=idempotent) for odd in ODD_IDS]
    return found


def _paths(key: str, scratch: str) -> list[Bad]:
    return [
        Bad(f"{key} empty", _set(key, ""), (key,)),
        Bad(f"{key} relative", _set(key, "relative/path"), (key,)),
        Bad(f"{key} with NUL", _set(key, f"{scratch}/nul\x00path"), (key,)),
    ]


def _capability_bads(key: str, repeated: bool) -> list[Bad]:
    found = [
        Bad(f"{key} {what}", _set(key, [cap] if repeated else cap), CAPABILITY_WORDS)
        for what, cap in BAD_CAPABILITIES.items()
    ]
    if repeated:
        found.append(Bad(f"{key} empty", _set(key, []), CAPABILITY_WORDS))
        mixed = [capability("mount"), capability("block")]
        found.append(Bad(f"{key} mount and block", _set(key, mixed), CAPABILITY_WORDS))
    else:
        found.append(Bad(f"{key} missing", _drop(key), CAPABILITY_WORDS))
    return found


def _ranges(key: str) -> list[Bad]:
    words = ("capacity_range", "required_bytes", "limit_bytes", "limit")
    rng = csi_pb2.CapacityRange
    return [
        Bad(f"{key} negative", _set(key, rng(required_bytes=-1)), words),
        Bad(f"{key} negative limit", _set(key, rng(limit_bytes=-5)), words),
        Bad(
            f"{key} required above limit", _set(key, rng(required_bytes=2 << 30, limit_bytes=1 << 30)), words
        ),
        Bad(f"{key} limit below 1Mi", _set(key, rng(limit_bytes=1000)), words),
        Bad(f"{key} above 64Ti", _set(key, rng(required_bytes=65 << 40)), words),
    ]


def _parameters(key: str) -> list[Bad]:
    words = ("parameter", "fsType", "scope")
    return [
        Bad(f"{key} unknown", _set(key, {"colour": "blue"}), words),
        Bad(f"{key} fsType btrfs", _set(key, {"fsType": "btrfs"}), words),
        Bad(f"{key} scope rack", _set(key, {"scope": "rack"}), words),
        Bad(f"{key} unicode key", _set(key, {"fsTypé": "ext4"}), words),
    ]


def _contexts(key: str) -> list[Bad]:
    valid = {"mode": "hypervisor", "naa": NAA, "pciSlot": "16", "guestAddress": "0:0:1"}
    initiator = {"mode": "initiator", "naa": NAA, "targetIqn": "iqn.2024-01.io.x:t",
                 "portals": "127.0.0.1:3260", "lunId": "1"}  # fmt: skip
    changes: dict[str, dict[str, str]] = {
        "empty": {},
        "mode bogus": {**valid, "mode": "bogus"},
        "no naa": {k: v for k, v in valid.items() if k != "naa"},
        "naa not hex": {**valid, "naa": "naa.xyz"},
        "pciSlot not a number": {**valid, "pciSlot": "slot"},
        "pciSlot superscript digit": {**valid, "pciSlot": "\u00b2"},
        "pciSlot 5000 digits": {**valid, "pciSlot": "9" * 5000},
        "guestAddress two parts": {**valid, "guestAddress": "0:1"},
        "guestAddress superscript": {**valid, "guestAddress": "0:\u00b9:1"},
        "initiator without target": {"mode": "initiator", "naa": NAA},
        "initiator target not an IQN": {**initiator, "targetIqn": "iscsi-target-1"},
        "initiator portal without port": {**initiator, "portals": "127.0.0.1"},
        "initiator second portal bad": {**initiator, "portals": "127.0.0.1:3260,host:99999"},
        "initiator lunId negative": {**initiator, "lunId": "-1"},
    }
    words = ("publish_context",)
    return [Bad(f"{key} {what}", _set(key, ctx), words) for what, ctx in changes.items()]


def _calls(
    method: str, message: Any, base: dict[str, Any], bads: list[Bad], idempotent: bool
) -> st.SearchStrategy[Call]:
    @st.composite
    def build(draw: Callable[..., Any]) -> Call:
        chosen = draw(
            st.lists(st.sampled_from(bads), min_size=1, max_size=2, unique_by=lambda b: b.what.split()[0])
        )
        fields = dict(base)
        for bad in chosen:
            bad.change(fields)
        return Call(method, message(**fields), tuple(chosen), idempotent and all(b.odd_only for b in chosen))

    return build()


def controller_calls() -> st.SearchStrategy[Call]:
    """Malformed calls of the Controller service (no volume named in them exists)."""
    missing = "gen-no-such-volume"
    cap = capability()
    pb = csi_pb2
    create = {
        "name": f"gen-csi-{uuid.uuid4().hex[:8]}",
        "volume_capabilities": [cap],
        "capacity_range": pb.CapacityRange(required_bytes=64 << 20),
    }
    create_bads = [
        Bad("name empty", _set("name", ""), ("name",)),
        *_capability_bads("volume_capabilities", repeated=True),
        Bad(
            "volume_capabilities unsupported mode",
            _set("volume_capabilities", [capability(mode=Mode.MULTI_NODE_MULTI_WRITER)]),
            ("access mode", *CAPABILITY_WORDS),
        ),
        *_ranges("capacity_range"),
        *_parameters("parameters"),
        Bad(
            "parameters fsType contradicts fs_type",
            _set("parameters", {"fsType": "xfs"}),
            ("fsType", "fs_type"),
        ),
        Bad(
            "volume_content_source snapshot",
            _set(
                "volume_content_source",
                pb.VolumeContentSource(snapshot=pb.VolumeContentSource.SnapshotSource(snapshot_id="snap")),
            ),
            ("snapshot",),
        ),
        Bad(
            "volume_content_source empty volume id",
            _set(
                "volume_content_source",
                pb.VolumeContentSource(volume=pb.VolumeContentSource.VolumeSource(volume_id="")),
            ),
            ("volume_content_source", "volume_id"),
        ),
        Bad(
            "volume_content_source missing volume",
            _set(
                "volume_content_source",
                pb.VolumeContentSource(volume=pb.VolumeContentSource.VolumeSource(volume_id=missing)),
            ),
            ("volume_content_source", missing),
        ),
    ]
    publish = {"volume_id": missing, "node_id": "vsphere://gen-no-such-node", "volume_capability": cap}
    publish_bads = [
        *_ids("volume_id", idempotent=False),
        Bad("node_id empty", _set("node_id", ""), ("node_id",)),
        *_capability_bads("volume_capability", repeated=False),
        Bad("readonly", _set("readonly", True), ("readonly",)),
    ]
    expand = {"volume_id": missing, "capacity_range": pb.CapacityRange(required_bytes=128 << 20)}
    expand_bads = [
        *_ids("volume_id", idempotent=False),
        Bad("capacity_range missing", _drop("capacity_range"), ("capacity_range",)),
        *_ranges("capacity_range"),
        *_capability_bads("volume_capability", repeated=False)[:-1],
    ]
    validate = {"volume_id": missing, "volume_capabilities": [cap]}
    return st.one_of(
        _calls("CreateVolume", pb.CreateVolumeRequest, create, create_bads, False),
        _calls("DeleteVolume", pb.DeleteVolumeRequest, {"volume_id": missing}, _ids("volume_id", True), True),
        _calls("ControllerPublishVolume", pb.ControllerPublishVolumeRequest, publish, publish_bads, False),
        _calls(
            "ControllerUnpublishVolume",
            pb.ControllerUnpublishVolumeRequest,
            {"volume_id": missing, "node_id": "vsphere://gen-no-such-node"},
            _ids("volume_id", True),
            True,
        ),
        _calls(
            "ValidateVolumeCapabilities",
            pb.ValidateVolumeCapabilitiesRequest,
            validate,
            [
                *_ids("volume_id", False),
                *_capability_bads("volume_capabilities", repeated=True)[:-1],
                *_parameters("parameters"),
            ],
            False,
        ),
        _calls("ControllerExpandVolume", pb.ControllerExpandVolumeRequest, expand, expand_bads, False),
        _calls(
            "ListVolumes",
            pb.ListVolumesRequest,
            {},
            [
                Bad("max_entries negative", _set("max_entries", -1), ("max_entries",)),
                Bad("starting_token text", _set("starting_token", "abc"), ("starting_token",)),
                Bad("starting_token huge", _set("starting_token", "9" * 40), ("starting_token",)),
                Bad("starting_token superscript", _set("starting_token", "\u00b2"), ("starting_token",)),
            ],
            False,
        ),
        _calls(
            "GetCapacity",
            pb.GetCapacityRequest,
            {},
            [*_capability_bads("volume_capabilities", repeated=True)[:-2], *_parameters("parameters")],
            False,
        ),
    )


def node_calls(scratch: str) -> st.SearchStrategy[Call]:
    """Malformed calls of the Node service; valid paths lie under `scratch`."""
    pb = csi_pb2
    vol = "gen-node-vol"
    context = {"mode": "hypervisor", "naa": NAA, "pciSlot": "16", "guestAddress": "0:0:1"}
    staging, target = f"{scratch}/staging/{vol}", f"{scratch}/mount/{vol}"
    cap = capability()
    node_caps = _capability_bads("volume_capability", repeated=False)
    stage = {
        "volume_id": vol,
        "staging_target_path": staging,
        "volume_capability": cap,
        "publish_context": context,
    }
    publish = {
        "volume_id": vol,
        "staging_target_path": staging,
        "target_path": target,
        "volume_capability": cap,
    }
    stats = {"volume_id": vol, "volume_path": target}
    expand = {"volume_id": vol, "volume_path": target}
    return st.one_of(
        _calls(
            "NodeStageVolume",
            pb.NodeStageVolumeRequest,
            stage,
            [
                Bad("volume_id empty", _set("volume_id", ""), ("volume_id",)),
                *_paths("staging_target_path", scratch),
                *node_caps,
                *_contexts("publish_context"),
            ],
            False,
        ),
        _calls(
            "NodeUnstageVolume",
            pb.NodeUnstageVolumeRequest,
            {"volume_id": vol, "staging_target_path": staging},
            [*_ids("volume_id", True), *_paths("staging_target_path", scratch)],
            True,
        ),
        _calls(
            "NodePublishVolume",
            pb.NodePublishVolumeRequest,
            publish,
            [
                Bad("volume_id empty", _set("volume_id", ""), ("volume_id",)),
                *_paths("target_path", scratch),
                *_paths("staging_target_path", scratch),
                *node_caps,
            ],
            False,
        ),
        _calls(
            "NodeUnpublishVolume",
            pb.NodeUnpublishVolumeRequest,
            {"volume_id": vol, "target_path": target},
            [*_ids("volume_id", True), *_paths("target_path", scratch)],
            True,
        ),
        _calls(
            "NodeGetVolumeStats",
            pb.NodeGetVolumeStatsRequest,
            stats,
            [Bad("volume_id empty", _set("volume_id", ""), ("volume_id",)), *_paths("volume_path", scratch)],
            False,
        ),
        _calls(
            "NodeExpandVolume",
            pb.NodeExpandVolumeRequest,
            expand,
            [
                Bad("volume_id empty", _set("volume_id", ""), ("volume_id",)),
                *_paths("volume_path", scratch),
                *_ranges("capacity_range"),
                *node_caps[:-1],
            ],
            False,
        ),
    )
