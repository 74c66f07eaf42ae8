"""`/api/protocols/san/lun-maps` and `/api/protocols/san/iscsi/credentials`.

A map gives a LUN a logical unit number in an igroup: the lowest free one when none is asked
for. For an iSCSI (or mixed) igroup that number is the LU number on the igroup's tgt target,
and tgt keeps LU 0 for its own controller, so numbers run from 1 to 255 there ("simulator
limitation" for others); an FC igroup's maps are only recorded (0 to 4095).

CHAP credentials are kept per initiator (`default` for all others) and become tgtd accounts
bound to the target of every igroup that holds the initiator (README: tgtd binds accounts
per target, not per initiator). Passwords are never answered.
"""

from __future__ import annotations

from netapp_ontap.resources.iscsi_credentials import IscsiCredentialsSchema
from netapp_ontap.resources.lun_map import LunMapSchema

from tests.lab.ontap import errors
from tests.lab.ontap.render import created, dig, listing, ref, single, unmodelled
from tests.lab.ontap.sim import ISCSI_LUN_IDS, Json, Request, Response, Sim, has_iscsi
from tests.lab.ontap.state import Credential, Igroup, Lun, LunMap

FC_LUN_IDS = range(0, 4096)
MAP_KEYS = ("lun.uuid", "lun.name", "igroup.uuid", "igroup.name", "logical_unit_number")


def igroup_by(sim: Sim, given: Json, target: str = "igroup.name") -> Igroup:
    st = sim.state
    igroup = (
        st.igroups.get(str(given.get("uuid")))
        if given.get("uuid")
        else st.igroup_named(str(given.get("name")))
    )
    if igroup is None or (given.get("name") not in (None, igroup.name)):
        shown = given.get("name") or given.get("uuid")
        raise errors.bad(errors.IGROUP_NOT_FOUND, f'The initiator group "{shown}" does not exist.', target)
    return igroup


def _lun_by(sim: Sim, given: Json) -> Lun:
    st = sim.state
    lun = st.luns.get(str(given.get("uuid"))) if given.get("uuid") else st.lun_named(str(given.get("name")))
    if lun is None or (given.get("name") not in (None, st.lun_path(lun))):
        shown = given.get("name") or given.get("uuid")
        raise errors.bad(errors.MAP_LUN_MISSING, f'The LUN "{shown}" does not exist.', "lun.name")
    return lun


def add(sim: Sim, lun: Lun, igroup: Igroup, lun_id: int | None) -> LunMap:
    st = sim.state
    if any(m.lun == lun.uuid for m in st.maps_of_igroup(igroup.uuid)):
        raise errors.exists(
            errors.MAP_EXISTS, f'LUN "{st.lun_path(lun)}" is already mapped to igroup "{igroup.name}".'
        )
    ids = ISCSI_LUN_IDS if has_iscsi(igroup) else FC_LUN_IDS
    used = {m.lun_id for m in st.maps_of_igroup(igroup.uuid)}
    if lun_id is None:
        lun_id = next((i for i in ids if i not in used), None)
        if lun_id is None:
            raise errors.bad(errors.INVALID_VALUE, f'Igroup "{igroup.name}" has no free logical unit number.')
    elif lun_id not in ids:
        raise errors.bad(
            errors.INVALID_VALUE,
            f"Logical unit number {lun_id} is outside {ids.start}..{ids.stop - 1}: a simulator limitation "
            "(tgt keeps LUN 0 for its controller; the simulator serves up to 255 LUNs per igroup).",
            "logical_unit_number",
        )
    elif lun_id in used:
        raise errors.exists(
            errors.GENERIC_EXISTS,
            f'Logical unit number {lun_id} is already in use in igroup "{igroup.name}".',
            "logical_unit_number",
        )
    lun_map = LunMap(lun.uuid, igroup.uuid, lun_id)
    st.maps.append(lun_map)
    return lun_map


def record(sim: Sim, lun_map: LunMap) -> Json:
    st = sim.state
    lun, igroup = st.luns[lun_map.lun], st.igroups[lun_map.igroup]
    group = ref(igroup.name, igroup.uuid, f"/api/protocols/san/igroups/{igroup.uuid}")
    group.update(protocol=igroup.protocol, os_type=igroup.os_type, initiators=list(igroup.initiators))
    return {
        "lun": ref(st.lun_path(lun), lun.uuid, f"/api/storage/luns/{lun.uuid}"),
        "igroup": group,
        "logical_unit_number": lun_map.lun_id,
        "svm": sim.svm_ref(),
        "_links": {"self": {"href": f"/api/protocols/san/lun-maps/{lun.uuid}/{igroup.uuid}"}},
    }


def _sort(rec: Json) -> str:
    return f"{rec['lun']['uuid']}/{rec['igroup']['uuid']}"


def get_all(sim: Sim, req: Request) -> Response:
    records = [record(sim, m) for m in sim.state.maps]
    return listing(sim, req, records, LunMapSchema, MAP_KEYS, _sort)


def _find(sim: Sim, req: Request) -> LunMap:
    lun_uuid, igroup_uuid = req.args
    found = next((m for m in sim.state.maps if m.lun == lun_uuid and m.igroup == igroup_uuid), None)
    if found is None:
        raise errors.OntapError(
            404, errors.MAP_MISSING, f"LUN {lun_uuid} is not mapped to igroup {igroup_uuid}."
        )
    return found


def get_one(sim: Sim, req: Request) -> Response:
    return single(req, record(sim, _find(sim, req)), LunMapSchema, MAP_KEYS)


def post(sim: Sim, req: Request) -> Response:
    body = req.body
    sim.check_svm(body)
    unmodelled(body, ["svm", "lun.name", "lun.uuid", "igroup.name", "igroup.uuid", "logical_unit_number"])
    lun = _lun_by(sim, body.get("lun") or {})
    igroup = igroup_by(sim, body.get("igroup") or {})
    lun_map = add(sim, lun, igroup, body.get("logical_unit_number"))
    sim.commit()
    return created(req, record(sim, lun_map), f"/api/protocols/san/lun-maps/{lun.uuid}/{igroup.uuid}")


def delete(sim: Sim, req: Request) -> Response:
    lun_map = _find(sim, req)
    sim.state.maps.remove(lun_map)
    sim.commit()
    return Response(200)


# --- iSCSI CHAP credentials ------------------------------------------------------------


def _credential_record(sim: Sim, cred: Credential) -> Json:
    out: Json = {
        "svm": sim.svm_ref(),
        "initiator": cred.initiator,
        "authentication_type": cred.auth_type,
        "_links": {
            "self": {"href": f"/api/protocols/san/iscsi/credentials/{sim.state.svm_uuid}/{cred.initiator}"}
        },
    }
    chap: Json = {}
    if cred.inbound_user:
        chap["inbound"] = {"user": cred.inbound_user}
    if cred.outbound_user:
        chap["outbound"] = {"user": cred.outbound_user}
    if chap:
        out["chap"] = chap
    return out


def _apply_chap(cred: Credential, body: Json) -> None:
    if "authentication_type" in body:
        cred.auth_type = body["authentication_type"]
    for side in ("inbound", "outbound"):
        given = dig(body, f"chap.{side}")
        if isinstance(given, dict):
            if "user" in given:
                setattr(cred, f"{side}_user", given["user"] or "")
            if "password" in given:
                setattr(cred, f"{side}_password", given["password"] or "")
    if cred.auth_type != "chap":
        cred.inbound_user = cred.inbound_password = cred.outbound_user = cred.outbound_password = ""
    elif not (cred.inbound_user and cred.inbound_password):
        raise errors.bad(
            errors.MISSING_VALUE,
            "CHAP needs chap.inbound.user and chap.inbound.password.",
            "chap.inbound.user",
        )
    elif cred.outbound_user and not cred.outbound_password:
        raise errors.bad(
            errors.MISSING_VALUE, "Outbound CHAP needs chap.outbound.password.", "chap.outbound.password"
        )


_CHAP_FIELDS = [
    "authentication_type",
    "chap.inbound.user",
    "chap.inbound.password",
    "chap.outbound.user",
    "chap.outbound.password",
]
_CRED_KEYS = ("svm.uuid", "svm.name", "initiator")


def credentials_get_all(sim: Sim, req: Request) -> Response:
    records = [_credential_record(sim, c) for c in sim.state.credentials.values()]
    return listing(sim, req, records, IscsiCredentialsSchema, _CRED_KEYS, lambda r: str(r["initiator"]))


def _credential(sim: Sim, req: Request) -> Credential:
    sim.check_svm_uuid(req.args[0])
    cred = sim.state.credentials.get(req.args[1])
    if cred is None:
        raise errors.not_found(f"iSCSI credentials for initiator {req.args[1]}")
    return cred


def credentials_get_one(sim: Sim, req: Request) -> Response:
    return single(req, _credential_record(sim, _credential(sim, req)), IscsiCredentialsSchema, _CRED_KEYS)


def credentials_post(sim: Sim, req: Request) -> Response:
    body = req.body
    sim.check_svm(body)
    unmodelled(body, ["svm", "initiator", *_CHAP_FIELDS])
    initiator = body.get("initiator")
    if not initiator:
        raise errors.bad(errors.MISSING_VALUE, 'Missing value for "initiator".', "initiator")
    if initiator in sim.state.credentials:
        raise errors.exists(
            errors.GENERIC_EXISTS, f'Credentials for initiator "{initiator}" already exist.', "initiator"
        )
    if "authentication_type" not in body:
        raise errors.bad(
            errors.MISSING_VALUE, 'Missing value for "authentication_type".', "authentication_type"
        )
    cred = Credential(initiator=initiator, auth_type=body["authentication_type"])
    _apply_chap(cred, body)
    sim.state.credentials[initiator] = cred
    sim.commit()
    location = f"/api/protocols/san/iscsi/credentials/{sim.state.svm_uuid}/{initiator}"
    return created(req, _credential_record(sim, cred), location)


def credentials_patch(sim: Sim, req: Request) -> Response:
    cred = _credential(sim, req)
    unmodelled(req.body, _CHAP_FIELDS)
    changed = Credential(**vars(cred))
    _apply_chap(changed, req.body)
    sim.state.credentials[cred.initiator] = changed
    sim.commit()
    return Response(200)


def credentials_delete(sim: Sim, req: Request) -> Response:
    cred = _credential(sim, req)
    del sim.state.credentials[cred.initiator]
    sim.commit()
    return Response(200)
