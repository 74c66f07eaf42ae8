"""A KVM host's Fibre Channel ports, read from libvirt's node devices.

libvirt lists each HBA port as a `scsi_host` node device; FC ports carry a nested
`<capability type='fc_host'>` with the port's WWNN and WWPN (NPIV vports too). These are
what the storage server's FC igroup must hold for the host to see a LUN.
"""

from __future__ import annotations

import xml.etree.ElementTree as ET
from dataclasses import dataclass

from lunbridge import san
from lunbridge.errors import InvalidArgument


@dataclass(frozen=True)
class FcPort:
    adapter: str  # the node device name, e.g. scsi_host5
    wwpn: str  # colon form, as storage servers take it
    wwnn: str | None


def parse_fc_host(text: str) -> FcPort | None:
    """The FC port of one node device XML, or None when it is not an FC scsi_host."""
    try:
        root = ET.fromstring(text)
    except ET.ParseError:
        return None
    name = (root.findtext("name") or "").strip()
    for capability in root.iter("capability"):
        if capability.get("type") != "fc_host":
            continue
        wwpn = (capability.findtext("wwpn") or "").strip()
        wwnn = (capability.findtext("wwnn") or "").strip()
        try:
            return FcPort(adapter=name, wwpn=san.wwn(wwpn), wwnn=san.wwn(wwnn) if wwnn else None)
        except InvalidArgument:
            return None  # a port without a readable WWPN cannot be masked to
    return None
