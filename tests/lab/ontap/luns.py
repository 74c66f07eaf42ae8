"""`/api/storage/luns`: LUNs in the simulated FlexVols, and LUN clones from volume snapshots.

A LUN is a sparse file of its volume's folder; its size is rounded up as ONTAP rounds (the
granule and extra are knobs, default: to a whole MiB, plus nothing). A LUN clone
(`clone.source.name` = `/vol/<vol>/.snapshot/<snap>/<lun>`, or a live LUN of the volume) is
a copy-on-write clone of that file with a new uuid and a new serial; it keeps its snapshot
busy (1638555 on delete) for `--lun-clone-split-seconds`, then counts as split.
"""

from __future__ import annotations

import re
import time

from netapp_ontap.resources.lun import LunSchema

from tests.lab.ontap import errors, maps
from tests.lab.ontap.render import created, dig, flag, listing, ref, single, unmodelled
from tests.lab.ontap.sim import Json, Request, Response, Sim
from tests.lab.ontap.state import Lun, Volume, new_uuid

MIN_SIZE = 4096
MAX_SIZE = 128 << 40
_PATH = re.compile(r"/vol/([^/]+)/([^/]+)")
_SNAP_PATH = re.compile(r"/vol/([^/]+)/\.snapshot/([^/]+)/([^/]+)")


def record(sim: Sim, lun: Lun) -> Json:
    st = sim.state
    volume = st.volumes[lun.volume]
    lun_maps = []
    for lun_map in sorted(st.maps_of_lun(lun.uuid), key=lambda m: m.lun_id):
        igroup = st.igroups[lun_map.igroup]
        href = f"/api/protocols/san/igroups/{igroup.uuid}"
        lun_maps.append(
            {"igroup": ref(igroup.name, igroup.uuid, href), "logical_unit_number": lun_map.lun_id}
        )
    path = sim.files.lun(lun.volume, lun.uuid)
    used = path.stat().st_blocks * 512 if path.exists() else 0
    out: Json = {
        "uuid": lun.uuid,
        "name": st.lun_path(lun),
        "serial_number": lun.serial,
        "serial_number_hex": lun.serial.encode("ascii").hex(),
        "os_type": lun.os_type,
        "class": "regular",
        "enabled": True,
        "create_time": lun.create_time,
        "space": {
            "size": lun.size,
            "used": used,
            "guarantee": {"requested": lun.reserved, "reserved": lun.reserved},
            "scsi_thin_provisioning_support_enabled": lun.thin,
        },
        "location": {
            "logical_unit": lun.unit,
            "volume": ref(volume.name, volume.uuid, f"/api/storage/volumes/{volume.uuid}"),
        },
        "lun_maps": lun_maps,
        "status": {
            "state": "online",
            "container_state": "online",
            "mapped": bool(lun_maps),
            "read_only": False,
        },
        "svm": sim.svm_ref(),
        "_links": {"self": {"href": f"/api/storage/luns/{lun.uuid}"}},
    }
    if lun.comment:
        out["comment"] = lun.comment
    return out


def get_all(sim: Sim, req: Request) -> Response:
    return listing(sim, req, [record(sim, lun) for lun in sim.state.luns.values()], LunSchema)


def get_one(sim: Sim, req: Request) -> Response:
    return single(req, record(sim, _lun(sim, req.args[0])), LunSchema)


def _lun(sim: Sim, uuid: str) -> Lun:
    lun = sim.state.luns.get(uuid)
    if lun is None:
        raise errors.not_found(f"LUN {uuid}")
    return lun


def _volume_of(sim: Sim, name: str) -> tuple[Volume, str]:
    match = _PATH.fullmatch(name)
    if match is None:
        raise errors.bad(
            errors.INVALID_VALUE,
            f'The value "{name}" is invalid for field "name" (/vol/<volume>/<lun>).',
            "name",
        )
    volume = sim.state.volume_named(match.group(1))
    if volume is None:
        raise errors.bad(
            errors.VOLUME_NOT_FOUND,
            f'Volume "{match.group(1)}" does not exist in SVM "{sim.config.svm}".',
            "name",
        )
    return volume, match.group(2)


def _check_size(sim: Sim, size: int, volume: Volume) -> int:
    if size < MIN_SIZE:
        raise errors.bad(
            errors.LUN_TOO_SMALL,
            f"The LUN size {size} is too small (at least {MIN_SIZE} bytes).",
            "space.size",
        )
    rounded = sim.round_lun_size(size)
    if rounded > MAX_SIZE or rounded > volume.size:
        raise errors.bad(
            errors.LUN_TOO_LARGE,
            f'The LUN size {rounded} is too large for volume "{volume.name}" ({volume.size} bytes).',
            "space.size",
        )
    return rounded


def post(sim: Sim, req: Request) -> Response:
    body = req.body
    sim.check_svm(body)
    unmodelled(
        body,
        ["name", "svm", "os_type", "comment", "space.size", "space.guarantee.requested",
         "space.scsi_thin_provisioning_support_enabled", "clone.source.name", "clone.source.uuid",
         "location.volume.name", "location.logical_unit", "lun_maps"],
    )  # fmt: skip
    name = body.get("name")
    if name is None and dig(body, "location.volume.name") and dig(body, "location.logical_unit"):
        name = f"/vol/{dig(body, 'location.volume.name')}/{dig(body, 'location.logical_unit')}"
    if not isinstance(name, str):
        raise errors.bad(errors.MISSING_VALUE, 'Missing value for "name".', "name")
    volume, unit = _volume_of(sim, name)
    lun = _clone(sim, body, volume, unit, name) if "clone" in body else _new(sim, body, volume, unit, name)
    sim.state.luns[lun.uuid] = lun
    for item in body.get("lun_maps") or []:
        igroup = maps.igroup_by(sim, item.get("igroup") or {})
        maps.add(sim, lun, igroup, item.get("logical_unit_number"))
    sim.commit()
    return created(req, record(sim, lun), f"/api/storage/luns/{lun.uuid}")


def _new(sim: Sim, body: Json, volume: Volume, unit: str, name: str) -> Lun:
    if sim.state.lun_named(name) is not None:
        raise errors.exists(errors.LUN_EXISTS, f'A LUN with the name "{name}" already exists.', "name")
    if "os_type" not in body:
        raise errors.bad(
            errors.MISSING_VALUE, 'Missing value for "os_type" (required for a new LUN).', "os_type"
        )
    size = dig(body, "space.size")
    if size is None:
        raise errors.bad(
            errors.MISSING_VALUE, 'Missing value for "space.size" (required for a new LUN).', "space.size"
        )
    lun = Lun(
        uuid=new_uuid(),
        volume=volume.uuid,
        unit=unit,
        serial=sim.state.new_serial(),
        os_type=body["os_type"],
        size=_check_size(sim, int(size), volume),
        comment=body.get("comment") or "",
        reserved=bool(dig(body, "space.guarantee.requested")),
        thin=dig(body, "space.scsi_thin_provisioning_support_enabled") is not False,
    )
    sim.files.make_sparse(sim.files.lun(volume.uuid, lun.uuid), lun.size)
    return lun


def _clone(sim: Sim, body: Json, volume: Volume, unit: str, name: str) -> Lun:
    if "os_type" in body:
        raise errors.bad(errors.LUN_CLONE_OS_TYPE, '"os_type" cannot be given for a LUN clone.', "os_type")
    if dig(body, "space.size") is not None:
        raise errors.bad(errors.LUN_CLONE_SIZE, '"space.size" cannot be given for a LUN clone.', "space.size")
    st = sim.state
    source_name, source_uuid = dig(body, "clone.source.name"), dig(body, "clone.source.uuid")
    snapshot = None
    if source_name is None and source_uuid is not None:
        source = st.luns.get(str(source_uuid))
    elif (snap := _SNAP_PATH.fullmatch(str(source_name))) is not None:
        if source_uuid is not None:
            raise errors.bad(
                errors.LUN_CLONE_SOURCE_UUID, "A snapshot LUN cannot be named by uuid.", "clone.source.uuid"
            )
        snap_volume = st.volume_named(snap.group(1))
        snapshot = st.snapshot_named(snap_volume.uuid, snap.group(2)) if snap_volume else None
        source = next((x for x in snapshot.luns if x.unit == snap.group(3)), None) if snapshot else None
    else:
        source = st.lun_named(str(source_name))
    if source is None:
        raise errors.bad(
            errors.LUN_CLONE_SOURCE_MISSING,
            f'The clone source "{source_name or source_uuid}" does not exist.',
            "clone.source.name",
        )
    if source.volume != volume.uuid:
        raise errors.bad(
            errors.INVALID_VALUE, "A LUN clone must be made in the volume of its source.", "name"
        )
    if st.lun_named(name) is not None:
        raise errors.exists(errors.LUN_CLONE_EXISTS, f'A LUN with the name "{name}" already exists.', "name")
    lun = Lun(
        uuid=new_uuid(),
        volume=volume.uuid,
        unit=unit,
        serial=st.new_serial(),
        os_type=source.os_type,
        size=source.size,
        comment=body.get("comment") or "",
        reserved=bool(dig(body, "space.guarantee.requested")),
        thin=source.thin,
    )
    if snapshot is not None:
        src_file = sim.files.snapshot_lun(volume.uuid, snapshot.uuid, source.uuid)
        lun.clone_of_snapshot = snapshot.uuid
        lun.split_done_at = time.time() + sim.config.lun_clone_split_seconds
    else:
        src_file = sim.files.lun(volume.uuid, source.uuid)
    sim.files.copy(src_file, sim.files.lun(volume.uuid, lun.uuid))
    return lun


def patch(sim: Sim, req: Request) -> Response:
    lun = _lun(sim, req.args[0])
    body = req.body
    unmodelled(
        body,
        [
            "comment",
            "space.size",
            "space.guarantee.requested",
            "space.scsi_thin_provisioning_support_enabled",
            "name",
        ],
    )
    volume = sim.state.volumes[lun.volume]
    recreate = frozenset[tuple[str, int]]()
    size = dig(body, "space.size")
    if size is not None:
        new = _check_size(sim, int(size), volume)
        if new < lun.size:
            raise errors.bad(
                errors.LUN_SHRINK,
                f"Reducing the size of a LUN is not supported ({lun.size} → {new}).",
                "space.size",
            )
        if new == lun.size:
            raise errors.bad(errors.LUN_SAME_SIZE, f"The LUN is already {new} bytes.", "space.size")
        sim.files.grow(sim.files.lun(lun.volume, lun.uuid), new)
        lun.size = new
        recreate = sim.lus_of(lun.uuid)
    if "name" in body:
        target, unit = _volume_of(sim, body["name"])
        if target.uuid != lun.volume:
            raise errors.bad(errors.INVALID_VALUE, "A LUN can be renamed only within its volume.", "name")
        if sim.state.lun_named(body["name"]) not in (None, lun):
            raise errors.exists(
                errors.LUN_EXISTS, f'A LUN with the name "{body["name"]}" already exists.', "name"
            )
        lun.unit = unit
    if "comment" in body:
        lun.comment = body["comment"] or ""
    if dig(body, "space.guarantee.requested") is not None:
        lun.reserved = bool(dig(body, "space.guarantee.requested"))
    if dig(body, "space.scsi_thin_provisioning_support_enabled") is not None:
        lun.thin = bool(dig(body, "space.scsi_thin_provisioning_support_enabled"))
    sim.commit(recreate)
    return Response(200)


def delete(sim: Sim, req: Request) -> Response:
    lun = _lun(sim, req.args[0])
    if sim.state.maps_of_lun(lun.uuid):
        if not flag(req, "allow_delete_while_mapped"):
            raise errors.bad(errors.LUN_MAPPED, f'LUN "{sim.state.lun_path(lun)}" is mapped; unmap it first.')
        sim.state.maps = [m for m in sim.state.maps if m.lun != lun.uuid]
    del sim.state.luns[lun.uuid]
    sim.files.remove(sim.files.lun(lun.volume, lun.uuid))
    sim.commit()
    return Response(200)
