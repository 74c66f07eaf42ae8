"""`/api/storage/volumes/{uuid}/snapshots`: point-in-time copies of a whole volume.

A snapshot is a copy-on-write clone of every LUN file of the volume (one FICLONE each, under
the simulator's lock, so no API change falls between them), together with the LUNs' records
as they were, so a restore or a FlexClone gets back the same names, sizes and serials. A
snapshot stays busy (1638555) while an unsplit FlexClone or a LUN clone still splitting
depends on it. Creation, change and deletion are jobs.
"""

from __future__ import annotations

import copy
import time

from netapp_ontap.resources.snapshot import SnapshotSchema

from tests.lab.ontap import errors
from tests.lab.ontap.render import created, listing, ref, single, unmodelled
from tests.lab.ontap.sim import Json, Request, Response, Sim
from tests.lab.ontap.state import Snapshot, Volume, new_uuid


def record(sim: Sim, snap: Snapshot) -> Json:
    vol = sim.state.volumes[snap.volume]
    out: Json = {
        "uuid": snap.uuid,
        "name": snap.name,
        "create_time": snap.create_time,
        "volume": ref(vol.name, vol.uuid, f"/api/storage/volumes/{vol.uuid}"),
        "svm": sim.svm_ref(),
        "_links": {"self": {"href": f"/api/storage/volumes/{vol.uuid}/snapshots/{snap.uuid}"}},
    }
    if snap.comment:
        out["comment"] = snap.comment
    return out


def take(sim: Sim, vol: Volume, name: str, comment: str, uuid: str | None = None) -> Snapshot:
    st = sim.state
    if st.snapshot_named(vol.uuid, name) is not None:
        raise errors.exists(
            errors.SNAPSHOT_EXISTS, f'Snapshot "{name}" already exists in volume "{vol.name}".', "name"
        )
    seq = max((s.seq for s in st.snapshots.values()), default=0) + 1
    snap = Snapshot(uuid or new_uuid(), name, vol.uuid, comment, seq=seq)
    for lun in st.luns_of(vol.uuid):
        sim.files.copy(
            sim.files.lun(vol.uuid, lun.uuid), sim.files.snapshot_lun(vol.uuid, snap.uuid, lun.uuid)
        )
        snap.luns.append(copy.deepcopy(lun))
    st.snapshots[snap.uuid] = snap
    return snap


def check_not_busy(sim: Sim, snap: Snapshot) -> None:
    st = sim.state
    clones = [v.name for v in st.volumes.values() if v.parent_snapshot == snap.uuid]
    luns = [
        st.lun_path(x)
        for x in st.luns.values()
        if x.clone_of_snapshot == snap.uuid and x.split_done_at > time.time()
    ]
    if clones or luns:
        raise errors.bad(
            errors.SNAPSHOT_BUSY,
            f'Snapshot "{snap.name}" is busy: FlexClones {clones} and LUN clones {luns} depend on it.',
        )


def drop(sim: Sim, snap: Snapshot) -> None:
    del sim.state.snapshots[snap.uuid]
    sim.files.remove_tree(sim.files.snapshot_dir(snap.volume, snap.uuid))


def _volume(sim: Sim, uuid: str) -> Volume:
    vol = sim.state.volumes.get(uuid)
    if vol is None:
        raise errors.not_found(f"Volume {uuid}")
    return vol


def _snapshot(sim: Sim, req: Request) -> Snapshot:
    vol = _volume(sim, req.args[0])
    snap = sim.state.snapshots.get(req.args[1])
    if snap is None or snap.volume != vol.uuid:
        raise errors.OntapError(
            404, errors.SNAPSHOT_MISSING, f'Snapshot {req.args[1]} of volume "{vol.name}" does not exist.'
        )
    return snap


def get_all(sim: Sim, req: Request) -> Response:
    vol = _volume(sim, req.args[0])
    records = [record(sim, s) for s in sim.state.snapshots.values() if s.volume == vol.uuid]
    return listing(sim, req, records, SnapshotSchema)


def get_one(sim: Sim, req: Request) -> Response:
    return single(req, record(sim, _snapshot(sim, req)), SnapshotSchema)


def post(sim: Sim, req: Request) -> Response:
    vol = _volume(sim, req.args[0])
    body = req.body
    sim.check_svm(body, required=False)
    unmodelled(body, ["name", "comment", "svm", "volume.name", "volume.uuid"])
    name = body.get("name")
    if not name:
        raise errors.bad(errors.MISSING_VALUE, 'Missing value for "name".', "name")
    uuid = new_uuid()
    location = f"/api/storage/volumes/{vol.uuid}/snapshots/{uuid}"

    def work() -> Snapshot:
        if vol.uuid not in sim.state.volumes:
            raise errors.bad(errors.VOLUME_NOT_FOUND, f'Volume "{vol.name}" does not exist any more.')
        snap = take(sim, vol, str(name), body.get("comment") or "", uuid)
        sim.commit()
        return snap

    return sim.run_job(req, work, lambda snap: created(req, record(sim, snap), location), location)


def patch(sim: Sim, req: Request) -> Response:
    snap = _snapshot(sim, req)
    body = req.body
    unmodelled(body, ["name", "comment"])

    def work() -> None:
        if "name" in body and body["name"] != snap.name:
            if sim.state.snapshot_named(snap.volume, body["name"]) is not None:
                raise errors.exists(
                    errors.SNAPSHOT_EXISTS, f'Snapshot "{body["name"]}" already exists.', "name"
                )
            snap.name = body["name"]
        if "comment" in body:
            snap.comment = body["comment"] or ""
        sim.commit()

    return sim.run_job(req, work, lambda _: Response(200))


def delete(sim: Sim, req: Request) -> Response:
    snap = _snapshot(sim, req)

    def work() -> None:
        if snap.uuid not in sim.state.snapshots:
            raise errors.bad(errors.SNAPSHOT_MISSING, f'Snapshot "{snap.name}" does not exist any more.')
        check_not_busy(sim, snap)
        drop(sim, snap)
        sim.commit()

    return sim.run_job(req, work, lambda _: Response(200))
