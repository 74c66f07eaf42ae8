"""The checks of the node service's requests that need no device: ids, paths, capabilities and
expansion ranges, each refused with INVALID_ARGUMENT naming the field before anything on the
node is touched (a relative path would be taken relative to the plugin's working folder)."""

from __future__ import annotations

import os
from typing import Any

from lunbridge.errors import InvalidArgument, NotFound
from lunbridge_csi._proto import csi_pb2
from lunbridge_csi.guest import filesystem
from lunbridge_csi.volume_rules import size_for

Mode = csi_pb2.VolumeCapability.AccessMode.Mode


def require(value: str, what: str) -> str:
    if not value:
        raise InvalidArgument(f"{what} is missing")
    return value


def path(value: str, what: str, *, volume_there: bool = False) -> str:
    """A path the CO gives: absolute and without NUL (checked before anything is touched).
    InvalidArgument, or NotFound where the path must hold a volume (`volume_there`: stats and
    expansion, where the CSI spec and csi-sanity take any path with no volume as NOT_FOUND)."""
    require(value, what)
    if "\0" in value or not value.startswith("/"):
        problem = f"{what} {value!r} is not an absolute path without NUL characters"
        raise NotFound(f"{problem}: no volume is there") if volume_there else InvalidArgument(problem)
    return value


def expansion(request: csi_pb2.NodeExpandVolumeRequest) -> None:
    """The optional parts of a NodeExpandVolume request, checked before the volume is looked up."""
    if request.HasField("capacity_range"):
        size_for(request.capacity_range)  # InvalidArgument / OutOfRange naming capacity_range
    if request.HasField("volume_capability"):
        capability(request)


def capability(request: Any) -> csi_pb2.VolumeCapability:
    if not request.HasField("volume_capability"):
        raise InvalidArgument("volume_capability is missing")
    capability: csi_pb2.VolumeCapability = request.volume_capability
    kind = capability.WhichOneof("access_type")
    if kind is None:
        raise InvalidArgument("volume_capability has neither block nor mount access")
    if capability.access_mode.mode == Mode.UNKNOWN:
        raise InvalidArgument("volume_capability.access_mode is missing")
    if kind == "mount":
        filesystem.fs_type(capability.mount.fs_type)  # validates
    return capability


def usage_of(stat: os.statvfs_result) -> list[csi_pb2.VolumeUsage]:
    """A mounted filesystem's usage (statvfs): bytes and inodes, each total/available/used."""
    unit = csi_pb2.VolumeUsage.Unit
    return [
        csi_pb2.VolumeUsage(
            unit=unit.BYTES,
            total=stat.f_blocks * stat.f_frsize,
            available=stat.f_bavail * stat.f_frsize,
            used=(stat.f_blocks - stat.f_bfree) * stat.f_frsize,
        ),
        csi_pb2.VolumeUsage(
            unit=unit.INODES, total=stat.f_files, available=stat.f_favail, used=stat.f_files - stat.f_ffree
        ),
    ]
