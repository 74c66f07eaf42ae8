"""`/api/storage/volumes` (FlexVols, FlexClones, SnapRestore) as asynchronous ONTAP jobs.

Every mutation here answers 202 with a job (or, with `return_timeout`, what the finished job
gives). A FlexVol is a folder of LUN files. A FlexClone is a new volume whose LUN files are
copy-on-write clones of the parent snapshot's, with new LUN uuids and NEW serials (an
initiator must never see two LUNs with one NAA); it keeps that snapshot busy until a split
(`clone.split_initiated: true`). A restore (`PATCH ?restore_to.snapshot.name=`) puts every LUN
of the volume back as it was at the snapshot, in place (same uuids, serials, sizes), drops
the LUNs made since, and deletes the newer snapshots, as a volume SnapRestore does.
"""

from __future__ import annotations

import re
import uuid as uuid_module

from netapp_ontap.resources.volume import VolumeSchema

from tests.lab.ontap import errors, snapshots
from tests.lab.ontap.render import created, dig, listing, ref, single, unmodelled
from tests.lab.ontap.sim import Json, Request, Response, Sim
from tests.lab.ontap.state import Lun, Volume, new_uuid

MIN_VOLUME_SIZE = 20 << 20
_NAME = re.compile(r"[A-Za-z_][A-Za-z0-9_]{0,202}")
RESTORE_QUERY = frozenset({"restore_to.snapshot.name", "restore_to.snapshot.uuid"})


def aggregate_uuid(sim: Sim, name: str) -> str:
    return str(uuid_module.uuid5(uuid_module.UUID(sim.state.cluster_uuid), f"aggregate:{name}"))


def record(sim: Sim, vol: Volume) -> Json:
    st = sim.state
    used = sum(lun.size for lun in st.luns_of(vol.uuid))
    clone: Json = {
        "is_flexclone": vol.parent_volume is not None,
        "split_initiated": vol.split_initiated,
        "has_flexclone": any(v.parent_volume == vol.uuid for v in st.volumes.values()),
    }
    if vol.parent_volume is not None and vol.parent_snapshot is not None:
        parent, snap = st.volumes[vol.parent_volume], st.snapshots[vol.parent_snapshot]
        clone["parent_volume"] = ref(parent.name, parent.uuid, f"/api/storage/volumes/{parent.uuid}")
        clone["parent_snapshot"] = ref(
            snap.name, snap.uuid, f"/api/storage/volumes/{parent.uuid}/snapshots/{snap.uuid}"
        )
    out: Json = {
        "uuid": vol.uuid,
        "name": vol.name,
        "size": vol.size,
        "state": "online",
        "style": "flexvol",
        "type": "rw",
        "create_time": vol.create_time,
        "svm": sim.svm_ref(),
        "aggregates": [{"name": vol.aggregate, "uuid": aggregate_uuid(sim, vol.aggregate)}],
        "guarantee": {"type": vol.guarantee, "honored": True},
        "space": {"size": vol.size, "used": used, "available": max(vol.size - used, 0)},
        "snapshot_policy": {"name": "none"},
        "snapshot_count": sum(1 for s in st.snapshots.values() if s.volume == vol.uuid),
        "clone": clone,
        "_links": {"self": {"href": f"/api/storage/volumes/{vol.uuid}"}},
    }
    if vol.comment:
        out["comment"] = vol.comment
    return out


def volume(sim: Sim, uuid: str) -> Volume:
    vol = sim.state.volumes.get(uuid)
    if vol is None:
        raise errors.not_found(f"Volume {uuid}")
    return vol


def get_all(sim: Sim, req: Request) -> Response:
    return listing(sim, req, [record(sim, v) for v in sim.state.volumes.values()], VolumeSchema)


def get_one(sim: Sim, req: Request) -> Response:
    return single(req, record(sim, volume(sim, req.args[0])), VolumeSchema)


def _check_name(name: object) -> str:
    if not isinstance(name, str) or _NAME.fullmatch(name) is None:
        raise errors.bad(
            errors.VOLUME_BAD_NAME,
            f'Invalid volume name "{name}": a volume name holds letters, digits and "_" only, '
            'and starts with a letter or "_".',
            "name",
        )
    return name


def _check_size(sim: Sim, vol: Volume, size: int) -> None:
    largest = max((lun.size for lun in sim.state.luns_of(vol.uuid)), default=0)
    if size < MIN_VOLUME_SIZE or size < largest:
        raise errors.bad(
            errors.VOLUME_TOO_SMALL,
            f"Volume size {size} is too small (at least {max(MIN_VOLUME_SIZE, largest)}).",
            "size",
        )


_POSTABLE = [
    "name", "svm", "aggregates", "size", "guarantee.type", "snapshot_policy.name", "comment",
    "space.snapshot.reserve_percent", "state", "style", "type", "clone.is_flexclone",
    "clone.parent_volume.name", "clone.parent_volume.uuid", "clone.parent_snapshot.name",
    "clone.parent_snapshot.uuid", "autosize.mode", "autosize.maximum",
]  # fmt: skip


def post(sim: Sim, req: Request) -> Response:
    body = req.body
    sim.check_svm(body)
    unmodelled(body, _POSTABLE)
    for key, only in (("state", "online"), ("style", "flexvol"), ("type", "rw")):
        if body.get(key, only) != only:
            raise errors.OntapError(400, "3", f'The simulator models only {key} "{only}".', key)
    name = _check_name(body.get("name"))
    new = new_uuid()
    location = f"/api/storage/volumes/{new}"

    def work() -> Volume:
        if sim.state.volume_named(name) is not None:
            raise errors.exists(
                errors.GENERIC_EXISTS, f'Volume "{name}" already exists in SVM "{sim.config.svm}".', "name"
            )
        vol = (
            _flexclone(sim, body, new, name)
            if dig(body, "clone.is_flexclone") or "clone" in body
            else _flexvol(sim, body, new, name)
        )
        sim.commit()
        return vol

    return sim.run_job(req, work, lambda vol: created(req, record(sim, vol), location), location)


def _flexvol(sim: Sim, body: Json, uuid: str, name: str) -> Volume:
    aggregates = body.get("aggregates") or [{"name": sim.config.aggregates[0]}]
    aggregate = str(aggregates[0].get("name") or "")
    if aggregate not in sim.config.aggregates or len(aggregates) != 1:
        raise errors.bad(
            errors.GENERIC_NOT_FOUND,
            f'Aggregate "{aggregate}" does not exist (or not one).',
            "aggregates.name",
        )
    if body.get("size") is None:
        raise errors.bad(errors.MISSING_VALUE, 'Missing value for "size".', "size")
    vol = Volume(
        uuid,
        name,
        int(body["size"]),
        aggregate,
        dig(body, "guarantee.type") or "volume",
        body.get("comment") or "",
    )
    _check_size(sim, vol, vol.size)
    sim.state.volumes[uuid] = vol
    return vol


def _flexclone(sim: Sim, body: Json, uuid: str, name: str) -> Volume:
    st = sim.state
    parent_ref = dig(body, "clone.parent_volume") or {}
    parent = st.volumes.get(str(parent_ref.get("uuid"))) or st.volume_named(str(parent_ref.get("name")))
    if parent is None:
        raise errors.bad(
            errors.VOLUME_NOT_FOUND, f"Parent volume {parent_ref} does not exist.", "clone.parent_volume.name"
        )
    snap_ref = dig(body, "clone.parent_snapshot") or {}
    if snap_ref:
        snap = st.snapshots.get(str(snap_ref.get("uuid"))) or st.snapshot_named(
            parent.uuid, str(snap_ref.get("name"))
        )
        if snap is None or snap.volume != parent.uuid:
            raise errors.bad(
                errors.SNAPSHOT_MISSING,
                f"Snapshot {snap_ref} of volume {parent.name} does not exist.",
                "clone.parent_snapshot.name",
            )
    else:  # ONTAP takes a snapshot of the parent for the clone
        snap = snapshots.take(sim, parent, f"clone_{name}.0", "")
    vol = Volume(uuid, name, parent.size, parent.aggregate, parent.guarantee, body.get("comment") or "")
    vol.parent_volume, vol.parent_snapshot = parent.uuid, snap.uuid
    st.volumes[uuid] = vol
    for old in snap.luns:
        lun = Lun(
            uuid=new_uuid(), volume=uuid, unit=old.unit, serial=st.new_serial(), os_type=old.os_type,
            size=old.size, comment=old.comment, reserved=old.reserved, thin=old.thin,
        )  # fmt: skip
        sim.files.copy(
            sim.files.snapshot_lun(parent.uuid, snap.uuid, old.uuid), sim.files.lun(uuid, lun.uuid)
        )
        st.luns[lun.uuid] = lun
    return vol


_PATCHABLE = ["size", "comment", "name", "clone.split_initiated", "guarantee.type", "autosize.mode",
              "autosize.maximum"]  # fmt: skip


def patch(sim: Sim, req: Request) -> Response:
    vol = volume(sim, req.args[0])
    body = req.body
    unmodelled(body, _PATCHABLE)
    restore = {k: v for k, v in req.query.items() if k in RESTORE_QUERY}
    if restore and body:
        raise errors.bad(
            errors.INVALID_VALUE, "A restore takes no other change in the same request.", "restore_to"
        )
    if "name" in body:
        _check_name(body["name"])
    if dig(body, "clone.split_initiated") is False:
        raise errors.bad(errors.INVALID_VALUE, "A split cannot be undone.", "clone.split_initiated")

    def work() -> None:
        if restore:
            _restore(sim, vol, restore)
            return
        if dig(body, "clone.split_initiated"):
            if vol.parent_volume is None:
                raise errors.bad(
                    errors.INVALID_VALUE, f'Volume "{vol.name}" is not a FlexClone.', "clone.split_initiated"
                )
            vol.parent_volume = vol.parent_snapshot = None
            vol.split_initiated = True
        if "size" in body:
            _check_size(sim, vol, int(body["size"]))
            vol.size = int(body["size"])
        if "name" in body and body["name"] != vol.name:
            if sim.state.volume_named(body["name"]) is not None:
                raise errors.exists(errors.GENERIC_EXISTS, f'Volume "{body["name"]}" already exists.', "name")
            vol.name = body["name"]
        if "comment" in body:
            vol.comment = body["comment"] or ""
        if dig(body, "guarantee.type"):
            vol.guarantee = dig(body, "guarantee.type")
        sim.commit()

    return sim.run_job(req, work, lambda _: Response(200))


def _restore(sim: Sim, vol: Volume, given: dict[str, str]) -> None:
    st = sim.state
    name, uuid = given.get("restore_to.snapshot.name"), given.get("restore_to.snapshot.uuid")
    snap = st.snapshots.get(uuid or "") if uuid else st.snapshot_named(vol.uuid, name or "")
    if snap is None or snap.volume != vol.uuid:
        raise errors.bad(
            errors.SNAPSHOT_MISSING,
            f'Snapshot "{name or uuid}" of volume "{vol.name}" does not exist.',
            "restore_to",
        )
    newer = [s for s in st.snapshots.values() if s.volume == vol.uuid and s.seq > snap.seq]
    for later in newer:
        snapshots.check_not_busy(sim, later)
    kept = {lun.uuid for lun in snap.luns}
    recreate: set[tuple[str, int]] = set()
    for lun in st.luns_of(vol.uuid):
        if lun.uuid not in kept:
            st.maps = [m for m in st.maps if m.lun != lun.uuid]
            sim.files.remove(sim.files.lun(vol.uuid, lun.uuid))
            del st.luns[lun.uuid]
    for old in snap.luns:
        sim.files.copy(
            sim.files.snapshot_lun(vol.uuid, snap.uuid, old.uuid), sim.files.lun(vol.uuid, old.uuid)
        )
        st.luns[old.uuid] = Lun(**vars(old))
        recreate |= sim.lus_of(old.uuid)
    for later in newer:
        snapshots.drop(sim, later)
    sim.commit(frozenset(recreate))


def delete(sim: Sim, req: Request) -> Response:
    vol = volume(sim, req.args[0])

    def work() -> None:
        st = sim.state
        mapped = [lun for lun in st.luns_of(vol.uuid) if st.maps_of_lun(lun.uuid)]
        if mapped:
            raise errors.bad(
                errors.LUN_MAPPED, f'Volume "{vol.name}" holds mapped LUNs ({st.lun_path(mapped[0])}).'
            )
        children = [v.name for v in st.volumes.values() if v.parent_volume == vol.uuid]
        if children:
            raise errors.bad(
                errors.GENERIC_IN_USE, f'Volume "{vol.name}" has FlexClones that are not split: {children}.'
            )
        for lun in st.luns_of(vol.uuid):
            del st.luns[lun.uuid]
        for snap in [s for s in st.snapshots.values() if s.volume == vol.uuid]:
            del st.snapshots[snap.uuid]
        del st.volumes[vol.uuid]
        sim.files.remove_tree(sim.files.root / "volumes" / vol.uuid)
        sim.commit()

    return sim.run_job(req, work, lambda _: Response(200))
