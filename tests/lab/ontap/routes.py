"""Which endpoint answers which path, and which netapp-ontap schema guards it.

Each route names the schema class its request bodies, query fields and answer records are
checked against, and the query parameters it takes beyond fields and the common ones
(`fields`, `max_records`, `return_records`, `order_by`); `return_timeout` only where ONTAP
takes it (the mutations of volumes, snapshots and LUNs).
"""

from __future__ import annotations

import re
from collections.abc import Callable
from dataclasses import dataclass

from marshmallow import Schema
from netapp_ontap.resources.cluster import ClusterSchema
from netapp_ontap.resources.igroup import IgroupSchema
from netapp_ontap.resources.igroup_initiator import IgroupInitiatorSchema
from netapp_ontap.resources.ip_interface import IpInterfaceSchema
from netapp_ontap.resources.iscsi_credentials import IscsiCredentialsSchema
from netapp_ontap.resources.iscsi_service import IscsiServiceSchema
from netapp_ontap.resources.job import JobSchema
from netapp_ontap.resources.lun import LunSchema
from netapp_ontap.resources.lun_map import LunMapSchema
from netapp_ontap.resources.snapshot import SnapshotSchema
from netapp_ontap.resources.svm import SvmSchema
from netapp_ontap.resources.volume import VolumeSchema

from tests.lab.ontap import igroups, luns, maps, snapshots, system, volumes
from tests.lab.ontap.sim import Request, Response, Sim

Handler = Callable[[Sim, Request], Response]
_SEG = "([^/]+)"
_MAPPED = frozenset({"allow_delete_while_mapped"})
# ONTAP takes return_timeout only on the calls that may run as jobs (volumes, snapshots, LUNs)
_TIMED = frozenset({"return_timeout"})


@dataclass(frozen=True)
class Route:
    method: str
    pattern: re.Pattern[str]
    handler: Handler
    schema: type[Schema]
    query: frozenset[str] = frozenset()
    collection: bool = False  # a collection GET: its field filters are checked by the listing


def _r(
    method: str, path: str, handler: Handler, schema: type[Schema], query: frozenset[str] = frozenset()
) -> Route:
    collection = method == "GET" and not path.endswith("{}") and path != "/api/cluster"
    return Route(method, re.compile(path.replace("{}", _SEG)), handler, schema, query, collection)


_VOL = "/api/storage/volumes"
_SNAP = "/api/storage/volumes/{}/snapshots"
_LUN = "/api/storage/luns"
_IG = "/api/protocols/san/igroups"
_INI = "/api/protocols/san/igroups/{}/initiators"
_MAP = "/api/protocols/san/lun-maps"
_CRED = "/api/protocols/san/iscsi/credentials"

ROUTES = (
    _r("GET", "/api/cluster", system.cluster, ClusterSchema),
    _r("GET", "/api/cluster/jobs", system.jobs, JobSchema),
    _r("GET", "/api/cluster/jobs/{}", system.job, JobSchema),
    _r("GET", "/api/svm/svms", system.svms, SvmSchema),
    _r("GET", "/api/svm/svms/{}", system.svm, SvmSchema),
    _r("GET", "/api/protocols/san/iscsi/services", system.iscsi_services, IscsiServiceSchema),
    _r("GET", "/api/protocols/san/iscsi/services/{}", system.iscsi_service, IscsiServiceSchema),
    _r("GET", "/api/network/ip/interfaces", system.interfaces, IpInterfaceSchema),
    _r("GET", "/api/network/ip/interfaces/{}", system.interface, IpInterfaceSchema),
    _r("GET", _VOL, volumes.get_all, VolumeSchema),
    _r("POST", _VOL, volumes.post, VolumeSchema, _TIMED),
    _r("GET", _VOL + "/{}", volumes.get_one, VolumeSchema),
    _r("PATCH", _VOL + "/{}", volumes.patch, VolumeSchema, volumes.RESTORE_QUERY | _TIMED),
    _r("DELETE", _VOL + "/{}", volumes.delete, VolumeSchema, _TIMED),
    _r("GET", _SNAP, snapshots.get_all, SnapshotSchema),
    _r("POST", _SNAP, snapshots.post, SnapshotSchema, _TIMED),
    _r("GET", _SNAP + "/{}", snapshots.get_one, SnapshotSchema),
    _r("PATCH", _SNAP + "/{}", snapshots.patch, SnapshotSchema, _TIMED),
    _r("DELETE", _SNAP + "/{}", snapshots.delete, SnapshotSchema, _TIMED),
    _r("GET", _LUN, luns.get_all, LunSchema),
    _r("POST", _LUN, luns.post, LunSchema, _TIMED),
    _r("GET", _LUN + "/{}", luns.get_one, LunSchema),
    _r("PATCH", _LUN + "/{}", luns.patch, LunSchema, _TIMED),
    _r("DELETE", _LUN + "/{}", luns.delete, LunSchema, _MAPPED | _TIMED),
    _r("GET", _IG, igroups.get_all, IgroupSchema),
    _r("POST", _IG, igroups.post, IgroupSchema),
    _r("GET", _IG + "/{}", igroups.get_one, IgroupSchema),
    _r("PATCH", _IG + "/{}", igroups.patch, IgroupSchema),
    _r("DELETE", _IG + "/{}", igroups.delete, IgroupSchema, _MAPPED),
    _r("GET", _INI, igroups.initiators_get_all, IgroupInitiatorSchema),
    _r("POST", _INI, igroups.initiators_post, IgroupInitiatorSchema),
    _r("GET", _INI + "/{}", igroups.initiators_get_one, IgroupInitiatorSchema),
    _r("DELETE", _INI + "/{}", igroups.initiators_delete, IgroupInitiatorSchema, _MAPPED),
    _r("GET", _MAP, maps.get_all, LunMapSchema),
    _r("POST", _MAP, maps.post, LunMapSchema),
    _r("GET", _MAP + "/{}/{}", maps.get_one, LunMapSchema),
    _r("DELETE", _MAP + "/{}/{}", maps.delete, LunMapSchema),
    _r("GET", _CRED, maps.credentials_get_all, IscsiCredentialsSchema),
    _r("POST", _CRED, maps.credentials_post, IscsiCredentialsSchema),
    _r("GET", _CRED + "/{}/{}", maps.credentials_get_one, IscsiCredentialsSchema),
    _r("PATCH", _CRED + "/{}/{}", maps.credentials_patch, IscsiCredentialsSchema),
    _r("DELETE", _CRED + "/{}/{}", maps.credentials_delete, IscsiCredentialsSchema),
)


def find(method: str, path: str) -> tuple[Route | None, tuple[str, ...], bool]:
    """The route for `method path` with its path arguments, and whether the path is known at
    all (for 404 against 405)."""
    known = False
    for route in ROUTES:
        match = route.pattern.fullmatch(path)
        if match is None:
            continue
        known = True
        if route.method == method:
            return route, match.groups(), True
    return None, (), known
