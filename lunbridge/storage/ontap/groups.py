"""The ontap backend's initiator groups, LUN maps, CHAP and portals.

An igroup's os_type is the `igroupOsType` setting when given, else the one the operator asks
for (vmware for ESXi hosts, linux for KVM hosts and nodes). ONTAP keeps CHAP per initiator, not
per igroup: `set_chap` gives every initiator of the igroup the same account. ONTAP serves one
iSCSI target per SVM; an initiator sees the LUNs mapped to the igroups it is in.
"""

from __future__ import annotations

from typing import Any

from lunbridge.errors import AlreadyExists, Conflict, InvalidArgument, NotFound
from lunbridge.san import Transport, canonical_initiators
from lunbridge.storage.base import DEFAULT_OS_TYPE, Chap, InitiatorGroup, Portal, check_name, check_os_type
from lunbridge.storage.base import Mapping as LunMap
from lunbridge.storage.ontap.client import Record
from lunbridge.storage.ontap.core import OntapCore, dig

IGROUP_FIELDS = "uuid,name,protocol,os_type,initiators.name,lun_maps.lun.name,lun_maps.logical_unit_number"
MAP_FIELDS = "lun.name,lun.uuid,igroup.name,igroup.uuid,logical_unit_number"
ISCSI_PORT = 3260
IGROUP_EXISTS = ("5374023",)
INITIATOR_PRESENT = ("5374035",)
ALREADY_MAPPED = ("1254207",)
NOT_MAPPED = ("5374922",)
IGROUP_GONE = ("5374852",)
MAX_LUN_ID = 4095


class GroupOperations(OntapCore):
    """igroups, maps, CHAP and portals."""

    def _igroup_of(self, record: Record) -> InitiatorGroup:
        return InitiatorGroup(
            name=str(record["name"]),
            transport=Transport.FCP if record.get("protocol") == "fcp" else Transport.ISCSI,
            initiators=tuple(sorted(str(i["name"]) for i in record.get("initiators") or [])),
            os_type=str(record.get("os_type", DEFAULT_OS_TYPE)),
        )

    async def _find_igroup(self, name: str) -> Record | None:
        return await self.client.first(f"reading igroup {name}", "igroup", IGROUP_FIELDS, name=name)

    async def _need_igroup(self, name: str) -> Record:
        found = await self._find_igroup(check_name("igroup", name))
        if found is None:
            raise NotFound(f"igroup {name!r} does not exist on SVM {self.config.svm}")
        return found

    async def create_igroup(
        self, name: str, transport: Transport, initiators: list[str], os_type: str = DEFAULT_OS_TYPE
    ) -> InitiatorGroup:
        check_name("igroup", name)
        wanted_os = self.config.igroup_os_type or str(check_os_type(os_type))
        if transport not in tuple(Transport):
            raise InvalidArgument(f"igroup {name} transport {transport!r} is not iscsi or fcp")
        wanted = sorted(canonical_initiators(Transport(transport), initiators))
        found = await self._find_igroup(name)
        if found is None:
            body = {
                "name": name,
                "protocol": str(transport),
                "os_type": wanted_os,
                "initiators": [{"name": i} for i in wanted],
            }
            await self.client.create(f"creating igroup {name}", "igroup", body, done=IGROUP_EXISTS)
            found = await self._need_igroup(name)
        group = self._igroup_of(found)
        if list(group.initiators) != wanted or group.transport != transport:
            raise AlreadyExists(
                f"igroup {name} exists with {group.transport} initiators "
                f"{', '.join(group.initiators) or 'none'}, not {', '.join(wanted) or 'none'}"
            )
        if group.os_type != wanted_os:
            await self.client.modify(
                f"setting igroup {name}'s os_type to {wanted_os}",
                "igroup",
                {"uuid": found["uuid"]},
                {"os_type": wanted_os},
            )
            group = self._igroup_of(await self._need_igroup(name))
        return group

    async def get_igroup(self, name: str) -> InitiatorGroup:
        return self._igroup_of(await self._need_igroup(name))

    async def list_igroups(self) -> list[InitiatorGroup]:
        found = await self.client.records("listing igroups", "igroup", IGROUP_FIELDS)
        return sorted((self._igroup_of(r) for r in found), key=lambda g: g.name)

    async def add_initiators(self, name: str, initiators: list[str]) -> InitiatorGroup:
        found = await self._need_igroup(name)
        group = self._igroup_of(found)
        present = set(group.initiators)
        for initiator in sorted(set(canonical_initiators(group.transport, initiators)) - present):
            await self.client.create(
                f"adding initiator {initiator} to igroup {name}",
                "igroup_initiator",
                {"name": initiator},
                (str(found["uuid"]),),
                done=INITIATOR_PRESENT,
            )
        return self._igroup_of(await self._need_igroup(name))

    async def remove_initiators(self, name: str, initiators: list[str]) -> InitiatorGroup:
        found = await self._need_igroup(name)
        group = self._igroup_of(found)
        present = set(group.initiators)
        for initiator in sorted(set(canonical_initiators(group.transport, initiators)) & present):
            await self.client.remove(
                f"removing initiator {initiator} from igroup {name}",
                "igroup_initiator",
                {"name": initiator},
                (str(found["uuid"]),),
                allow_delete_while_mapped="true",
            )
        return self._igroup_of(await self._need_igroup(name))

    async def delete_igroup(self, name: str) -> None:
        found = await self._find_igroup(check_name("igroup", name))
        if found is None:
            return
        maps = found.get("lun_maps") or []
        if maps:
            luns = ", ".join(sorted(str(dig(m, "lun.name", "?")).rsplit("/", 1)[-1] for m in maps))
            raise Conflict(f"igroup {name} has LUNs mapped ({luns}): unmap them first")
        await self.client.remove(
            f"deleting igroup {name}", "igroup", {"uuid": found["uuid"]}, done=IGROUP_GONE
        )

    # -- maps -----------------------------------------------------------------------------

    def _map_of(self, record: Record) -> LunMap:
        return LunMap(
            lun=str(dig(record, "lun.name", "")).rsplit("/", 1)[-1],
            igroup=str(dig(record, "igroup.name", "")),
            lun_id=int(record.get("logical_unit_number", 0)),
        )

    async def map_lun(self, lun: str, igroup: str, lun_id: int | None = None) -> LunMap:
        check_name("LUN", lun)
        check_name("igroup", igroup)
        if lun_id is not None and not 0 <= lun_id <= MAX_LUN_ID:
            raise InvalidArgument(f"LUN id {lun_id} is out of ONTAP's range 0-{MAX_LUN_ID}")
        for existing in await self.list_mappings(lun, igroup):
            if lun_id is None or existing.lun_id == lun_id:
                return existing
            raise AlreadyExists(
                f"LUN {lun} is mapped to igroup {igroup} as LUN id {existing.lun_id}, not {lun_id}: "
                "unmap it first"
            )
        await self.need_lun(lun)
        group = await self._need_igroup(igroup)
        if lun_id is not None:
            taken = {
                int(m.get("logical_unit_number", -1)): dig(m, "lun.name") for m in group.get("lun_maps") or []
            }
            if lun_id in taken:
                raise Conflict(
                    f"LUN id {lun_id} of igroup {igroup} is taken by LUN {taken[lun_id]}: choose another "
                    "id, or let the backend choose"
                )
        body: dict[str, object] = {"lun": {"name": self.lun_path(lun)}, "igroup": {"name": igroup}}
        if lun_id is not None:
            body["logical_unit_number"] = lun_id
        await self.client.create(
            f"mapping LUN {lun} to igroup {igroup}", "lun_map", body, done=ALREADY_MAPPED
        )
        made = await self.list_mappings(lun, igroup)
        if not made:
            raise NotFound(f"ONTAP accepted mapping LUN {lun} to igroup {igroup} but lists no such map")
        return made[0]

    async def unmap_lun(self, lun: str, igroup: str) -> None:
        query: dict[str, Any] = {"lun.name": self.lun_path(lun), "igroup.name": check_name("igroup", igroup)}
        what = f"reading the map of LUN {lun} to igroup {igroup}"
        found = await self.client.records(what, "lun_map", MAP_FIELDS, **query)
        for record in found:
            keys = {"lun": {"uuid": dig(record, "lun.uuid")}, "igroup": {"uuid": dig(record, "igroup.uuid")}}
            await self.client.remove(
                f"unmapping LUN {lun} from igroup {igroup}", "lun_map", keys, done=NOT_MAPPED
            )

    async def list_mappings(self, lun: str | None = None, igroup: str | None = None) -> list[LunMap]:
        query: dict[str, Any] = {
            "lun.name": self.lun_path(lun) if lun is not None else f"/vol/{self.config.flexvol_prefix}*/*"
        }
        if igroup is not None:
            query["igroup.name"] = check_name("igroup", igroup)
        found = await self.client.records("listing LUN maps", "lun_map", MAP_FIELDS, **query)
        return sorted((self._map_of(r) for r in found), key=lambda m: (m.lun, m.igroup))

    # -- portals and CHAP -----------------------------------------------------------------

    async def portals(self) -> list[Portal]:
        """`dataInterfaces`, else the SVM's iSCSI data interfaces that are up (port 3260)."""
        if self.config.data_interfaces:
            return [Portal(address) for address in self.config.data_interfaces]
        found = await self.client.records(
            "listing the SVM's iSCSI data interfaces",
            "ip_interface",
            "ip.address,state,enabled",
            services="data_iscsi",
        )
        up = [str(dig(r, "ip.address")) for r in found if r.get("state") == "up" and r.get("enabled", True)]
        if not up:
            raise NotFound(
                f"SVM {self.config.svm} has no iSCSI data interface that is up (settings.dataInterfaces)"
            )
        return [Portal(f"[{ip}]:{ISCSI_PORT}" if ":" in ip else f"{ip}:{ISCSI_PORT}") for ip in sorted(up)]

    async def login_portals(self, igroup: str) -> list[Portal]:
        """Every portal, each with the SVM's iSCSI target (one per SVM in ONTAP)."""
        await self._need_igroup(igroup)
        service = await self.client.first("reading the SVM's iSCSI service", "iscsi_service", "target.name")
        target = dig(service or {}, "target.name")
        if not target:
            raise NotFound(f"SVM {self.config.svm} has no iSCSI service (its target name is unknown)")
        return [Portal(p.address, str(target)) for p in await self.portals()]

    async def set_chap(self, igroup: str, chap: Chap | None) -> None:
        """Every initiator of the igroup gets `chap` (ONTAP's CHAP is per initiator); None: none."""
        group = self._igroup_of(await self._need_igroup(igroup))
        if group.transport is not Transport.ISCSI:
            raise InvalidArgument(f"igroup {igroup} is an FCP igroup; CHAP is iSCSI's")
        svm = await self.client.first(f"reading SVM {self.config.svm}", "svm", "uuid", name=self.config.svm)
        if svm is None:
            raise NotFound(f"SVM {self.config.svm!r} does not exist")
        for initiator in group.initiators:
            await self._set_initiator_chap(str(svm["uuid"]), initiator, chap)

    async def _set_initiator_chap(self, svm_uuid: str, initiator: str, chap: Chap | None) -> None:
        body: dict[str, object] = {"authentication_type": "none"}
        if chap is not None:
            inbound = {"user": chap.user, "password": chap.secret}
            secrets: dict[str, object] = {"inbound": inbound}
            if chap.mutual_user is not None:
                secrets["outbound"] = {"user": chap.mutual_user, "password": chap.mutual_secret}
            body = {"authentication_type": "chap", "chap": secrets}
        what = f"setting the CHAP of initiator {initiator}"
        found = await self.client.first(what, "iscsi_credentials", "initiator", initiator=initiator)
        if found is None:
            await self.client.create(what, "iscsi_credentials", {"initiator": initiator, **body})
        else:
            await self.client.modify(
                what, "iscsi_credentials", {"svm": {"uuid": svm_uuid}, "initiator": initiator}, body
            )
