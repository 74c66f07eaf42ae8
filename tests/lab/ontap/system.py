"""The read-only parts: cluster, the one SVM, its iSCSI service and data interfaces, and jobs.

The iSCSI service answers ONTAP's own form of target name (one per SVM,
`iqn.1992-08.com.netapp:sn.<hex>:vs.<n>`), as a client of a real ONTAP would read it; tgtd
does not serve a target of that name (README: one target per igroup). A data interface holds
only an IP address: ONTAP's iSCSI port is always 3260, the simulator's portal port is the lab's
tgtd's (`OntapSim.portal` in tests).
"""

from __future__ import annotations

import uuid as uuid_module

from netapp_ontap.resources.cluster import ClusterSchema
from netapp_ontap.resources.ip_interface import IpInterfaceSchema
from netapp_ontap.resources.iscsi_service import IscsiServiceSchema
from netapp_ontap.resources.job import JobSchema
from netapp_ontap.resources.svm import SvmSchema

from tests.lab.ontap import errors
from tests.lab.ontap.render import listing, single
from tests.lab.ontap.sim import Json, Request, Response, Sim
from tests.lab.ontap.volumes import aggregate_uuid

VERSION = {
    "full": "NetApp Release 9.19.1: lunbridge ONTAP REST simulator",
    "generation": 9,
    "major": 19,
    "minor": 1,
}
VSERVER_ID = 3


def cluster(sim: Sim, req: Request) -> Response:
    record = {
        "name": sim.config.cluster_name,
        "uuid": sim.state.cluster_uuid,
        "version": dict(VERSION),
        "_links": {"self": {"href": "/api/cluster"}},
    }
    return single(req, record, ClusterSchema, ("name", "uuid"))


def _svm(sim: Sim) -> Json:
    free = sim.files.free_bytes()
    aggregates = [
        {"name": name, "uuid": aggregate_uuid(sim, name), "available_size": free}
        for name in sim.config.aggregates
    ]
    return {**sim.svm_ref(), "state": "running", "subtype": "default", "aggregates": aggregates}


def svms(sim: Sim, req: Request) -> Response:
    return listing(sim, req, [_svm(sim)], SvmSchema)


def svm(sim: Sim, req: Request) -> Response:
    sim.check_svm_uuid(req.args[0])
    return single(req, _svm(sim), SvmSchema)


def target_iqn(sim: Sim) -> str:
    return f"iqn.1992-08.com.netapp:sn.{uuid_module.UUID(sim.state.cluster_uuid).hex}:vs.{VSERVER_ID}"


def _iscsi(sim: Sim) -> Json:
    return {
        "svm": sim.svm_ref(),
        "enabled": True,
        "target": {"name": target_iqn(sim), "alias": sim.config.svm},
        "_links": {"self": {"href": f"/api/protocols/san/iscsi/services/{sim.state.svm_uuid}"}},
    }


_SVM_KEYS = ("svm.uuid", "svm.name")


def iscsi_services(sim: Sim, req: Request) -> Response:
    return listing(sim, req, [_iscsi(sim)], IscsiServiceSchema, _SVM_KEYS, lambda r: str(r["svm"]["uuid"]))


def iscsi_service(sim: Sim, req: Request) -> Response:
    sim.check_svm_uuid(req.args[0])
    return single(req, _iscsi(sim), IscsiServiceSchema, _SVM_KEYS)


def _interfaces(sim: Sim) -> list[Json]:
    out = []
    for index, portal in enumerate(sim.config.data_interfaces, start=1):
        address = portal.rsplit(":", 1)[0]
        uuid = str(uuid_module.uuid5(uuid_module.UUID(sim.state.svm_uuid), f"lif:{portal}"))
        out.append(
            {
                "uuid": uuid,
                "name": f"{sim.config.svm}_iscsi_lif_{index}",
                "ip": {"address": address, "family": "ipv4"},
                "state": "up",
                "enabled": True,
                "scope": "svm",
                "services": ["data_iscsi"],
                "svm": sim.svm_ref(),
                "_links": {"self": {"href": f"/api/network/ip/interfaces/{uuid}"}},
            }
        )
    return out


def interfaces(sim: Sim, req: Request) -> Response:
    return listing(sim, req, _interfaces(sim), IpInterfaceSchema)


def interface(sim: Sim, req: Request) -> Response:
    found = next((i for i in _interfaces(sim) if i["uuid"] == req.args[0]), None)
    if found is None:
        raise errors.not_found(f"Interface {req.args[0]}")
    return single(req, found, IpInterfaceSchema)


def jobs(sim: Sim, req: Request) -> Response:
    return listing(sim, req, [job.record() for job in sim.jobs.all()], JobSchema, ("uuid",))


def job(sim: Sim, req: Request) -> Response:
    found = sim.jobs.get(req.args[0])
    if found is None:
        raise errors.not_found(f"Job {req.args[0]}")
    return single(req, found.record(), JobSchema, ("uuid",))
