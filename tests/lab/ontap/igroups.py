"""`/api/protocols/san/igroups` and their `/initiators`: who may see the LUNs mapped to a group.

Initiator names are checked by protocol (iSCSI: `iqn.yyyy-mm.…`, `eui.` + 16 hex digits,
`naa.` + hex; FC: a WWPN `xx:xx:xx:xx:xx:xx:xx:xx`; `mixed` takes both), and an initiator may
not sit in two igroups of different os_type (5374732), as ONTAP refuses. A change of an iSCSI
igroup's initiators or name changes its tgt target's ACL or name (README: one target per
igroup).
"""

from __future__ import annotations

import re

from netapp_ontap.resources.igroup import IgroupSchema
from netapp_ontap.resources.igroup_initiator import IgroupInitiatorSchema

from tests.lab.ontap import errors
from tests.lab.ontap.render import created, flag, listing, ref, single, unmodelled
from tests.lab.ontap.sim import Json, Request, Response, Sim
from tests.lab.ontap.state import Igroup, new_uuid

_ISCSI = re.compile(
    r"iqn\.\d{4}-\d{2}(\.[A-Za-z0-9-]+)+(:.+)?|eui\.[0-9A-Fa-f]{16}|naa\.[0-9A-Fa-f]{16}([0-9A-Fa-f]{16})?"
)
_WWPN = re.compile(r"[0-9A-Fa-f]{2}(:[0-9A-Fa-f]{2}){7}")


def record(sim: Sim, igroup: Igroup) -> Json:
    st = sim.state
    href = f"/api/protocols/san/igroups/{igroup.uuid}"
    lun_maps = []
    for lun_map in sorted(st.maps_of_igroup(igroup.uuid), key=lambda m: m.lun_id):
        lun = st.luns[lun_map.lun]
        lun_ref = ref(st.lun_path(lun), lun.uuid, f"/api/storage/luns/{lun.uuid}")
        lun_maps.append({"lun": lun_ref, "logical_unit_number": lun_map.lun_id})
    out: Json = {
        "uuid": igroup.uuid,
        "name": igroup.name,
        "protocol": igroup.protocol,
        "os_type": igroup.os_type,
        "initiators": [{"name": name} for name in igroup.initiators],
        "lun_maps": lun_maps,
        "delete_on_unmap": False,
        "svm": sim.svm_ref(),
        "_links": {"self": {"href": href}},
    }
    if igroup.comment:
        out["comment"] = igroup.comment
    return out


def _igroup(sim: Sim, uuid: str) -> Igroup:
    igroup = sim.state.igroups.get(uuid)
    if igroup is None:
        raise errors.not_found(f"Initiator group {uuid}", errors.IGROUP_NOT_FOUND)
    return igroup


def get_all(sim: Sim, req: Request) -> Response:
    return listing(sim, req, [record(sim, g) for g in sim.state.igroups.values()], IgroupSchema)


def get_one(sim: Sim, req: Request) -> Response:
    return single(req, record(sim, _igroup(sim, req.args[0])), IgroupSchema)


def _check_initiator(sim: Sim, igroup: Igroup, name: str, os_type: str, target: str) -> None:
    iscsi, fc = _ISCSI.fullmatch(name) is not None, _WWPN.fullmatch(name) is not None
    fits = {"iscsi": iscsi, "fcp": fc, "mixed": iscsi or fc}[igroup.protocol]
    if not fits:
        raise errors.bad(
            errors.INITIATOR_BAD_NAME,
            f'"{name}" is not a valid {igroup.protocol} initiator name for igroup "{igroup.name}".',
            target,
        )
    for other in sim.state.igroups.values():
        if other.uuid != igroup.uuid and name in other.initiators and other.os_type != os_type:
            raise errors.bad(
                errors.INITIATOR_OS_TYPE_CLASH,
                f'Initiator "{name}" is already in igroup "{other.name}" of os_type "{other.os_type}"; '
                f'it cannot be in an igroup of os_type "{os_type}" too.',
                target,
            )


def _add_initiators(sim: Sim, igroup: Igroup, names: list[str], target: str) -> None:
    for name in names:
        if name in igroup.initiators:
            raise errors.exists(
                errors.INITIATOR_PRESENT, f'Initiator "{name}" is already in igroup "{igroup.name}".', target
            )
        _check_initiator(sim, igroup, name, igroup.os_type, target)
        igroup.initiators.append(name)


def post(sim: Sim, req: Request) -> Response:
    body = req.body
    sim.check_svm(body)
    unmodelled(body, ["svm", "name", "protocol", "os_type", "comment", "initiators"])
    name = body.get("name")
    if not name:
        raise errors.bad(errors.MISSING_VALUE, 'Missing value for "name".', "name")
    if "os_type" not in body:
        raise errors.bad(errors.MISSING_VALUE, 'Missing value for "os_type".', "os_type")
    if sim.state.igroup_named(name) is not None:
        raise errors.exists(
            errors.IGROUP_EXISTS, f'An initiator group named "{name}" already exists.', "name"
        )
    igroup = Igroup(
        new_uuid(), name, body.get("protocol") or "mixed", body["os_type"], [], body.get("comment") or ""
    )
    items = body.get("initiators") or []
    for item in items:
        unmodelled(item, ["name"], "initiators.")
    _add_initiators(sim, igroup, [str(item.get("name")) for item in items], "initiators.name")
    sim.state.igroups[igroup.uuid] = igroup
    sim.commit()
    return created(req, record(sim, igroup), f"/api/protocols/san/igroups/{igroup.uuid}")


def patch(sim: Sim, req: Request) -> Response:
    igroup = _igroup(sim, req.args[0])
    body = req.body
    unmodelled(body, ["name", "os_type", "comment"])
    if "name" in body and body["name"] != igroup.name:
        if sim.state.igroup_named(body["name"]) is not None:
            raise errors.exists(
                errors.IGROUP_EXISTS, f'An initiator group named "{body["name"]}" already exists.', "name"
            )
        igroup.name = body["name"]
    if "os_type" in body:
        for name in igroup.initiators:
            _check_initiator(sim, igroup, name, body["os_type"], "os_type")
        igroup.os_type = body["os_type"]
    if "comment" in body:
        igroup.comment = body["comment"] or ""
    sim.commit()
    return Response(200)


def delete(sim: Sim, req: Request) -> Response:
    igroup = _igroup(sim, req.args[0])
    if sim.state.maps_of_igroup(igroup.uuid):
        if not flag(req, "allow_delete_while_mapped"):
            raise errors.bad(errors.IGROUP_MAPPED, f'Initiator group "{igroup.name}" has LUNs mapped to it.')
        sim.state.maps = [m for m in sim.state.maps if m.igroup != igroup.uuid]
    del sim.state.igroups[igroup.uuid]
    sim.commit()
    return Response(200)


# --- /igroups/{uuid}/initiators ----------------------------------------------------------


def _initiator_record(igroup: Igroup, name: str) -> Json:
    return {
        "name": name,
        "igroup": ref(igroup.name, igroup.uuid, f"/api/protocols/san/igroups/{igroup.uuid}"),
        "_links": {"self": {"href": f"/api/protocols/san/igroups/{igroup.uuid}/initiators/{name}"}},
    }


def initiators_get_all(sim: Sim, req: Request) -> Response:
    igroup = _igroup(sim, req.args[0])
    records = [_initiator_record(igroup, name) for name in igroup.initiators]
    return listing(sim, req, records, IgroupInitiatorSchema, ("name",), lambda r: str(r["name"]))


def _initiator(sim: Sim, req: Request) -> tuple[Igroup, str]:
    igroup = _igroup(sim, req.args[0])
    if req.args[1] not in igroup.initiators:
        raise errors.not_found(f'Initiator "{req.args[1]}" in igroup "{igroup.name}"')
    return igroup, req.args[1]


def initiators_get_one(sim: Sim, req: Request) -> Response:
    igroup, name = _initiator(sim, req)
    return single(req, _initiator_record(igroup, name), IgroupInitiatorSchema, ("name",))


def initiators_post(sim: Sim, req: Request) -> Response:
    igroup = _igroup(sim, req.args[0])
    body = req.body
    if "records" in body:
        unmodelled(body, ["records"])
        for item in body["records"] or []:
            unmodelled(item, ["name"], "records.")
        names, target = [str(item.get("name")) for item in body["records"] or []], "records.name"
    else:
        unmodelled(body, ["name"])
        names, target = [str(body.get("name"))] if body.get("name") else [], "name"
    if not names:
        raise errors.bad(errors.MISSING_VALUE, 'Missing value for "name".', "name")
    before = list(igroup.initiators)
    try:
        _add_initiators(sim, igroup, names, target)
    except errors.OntapError:
        igroup.initiators = before
        raise
    sim.commit()
    location = f"/api/protocols/san/igroups/{igroup.uuid}/initiators/{names[0]}"
    return created(req, _initiator_record(igroup, names[0]), location)


def initiators_delete(sim: Sim, req: Request) -> Response:
    igroup, name = _initiator(sim, req)
    if sim.state.maps_of_igroup(igroup.uuid) and not flag(req, "allow_delete_while_mapped"):
        raise errors.bad(
            errors.IGROUP_MAPPED,
            f'Initiator group "{igroup.name}" has LUNs mapped; removing an initiator needs '
            "allow_delete_while_mapped=true.",
        )
    igroup.initiators.remove(name)
    sim.commit()
    return Response(200)
