"""How lunbridge reaches one KVM host through libvirt: the connection URI, the host's iSCSI
initiator name, and the limits of the guests' SCSI controllers.

libvirt has no notion of a host's SAN identity: QEMU's own iSCSI initiator logs in with
whatever IQN the disk definition names. So the IQN the host's LUNs are masked to is part of
the configuration (the name the KVM host is known by on the storage server), and every disk
lunbridge attaches names it.

A URI may carry an account (`qemu+tcp://user:password@kvm1/system`): its password is
registered with `lunbridge.redact`, so no message shows it.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass, field

from lunbridge import redact, san
from lunbridge.errors import InvalidArgument
from lunbridge.hypervisor.libvirt.refs import parse_portal

# virtio-scsi (QEMU and Linux alike) addresses targets 0..255 and LUNs 0..16383 per controller.
VIRTIO_SCSI_TARGETS = 256
VIRTIO_SCSI_UNITS = 16384

ENV_URI = "LUNBRIDGE_LIBVIRT_URI"
ENV_HOST_IQN = "LUNBRIDGE_HOST_IQN"
ENV_HOST_NAME = "LUNBRIDGE_LIBVIRT_HOST_NAME"
ENV_PORTALS = "LUNBRIDGE_LIBVIRT_PORTALS"


@dataclass(frozen=True)
class LibvirtConfig:
    """One libvirt connection = one hypervisor host.

    `uri`: e.g. `qemu:///system`, `qemu+ssh://root@kvm1/system`.
    `host_iqn`: the iSCSI initiator name of that host as the storage server knows it; QEMU
    logs in with it for every LUN lunbridge attaches.
    `host_name`: the host's name in lunbridge (igroup names, events); default: the name
    libvirt reports (`virConnectGetHostname`).
    `portals`: iSCSI portals known from the start (more are added by `ensure_iscsi_portal`).
    `max_controllers`: SCSI controllers per guest (any model; lunbridge adds virtio-scsi ones).
    `targets_per_controller` x `units_per_target`: the SCSI addresses lunbridge uses on each
    virtio-scsi controller. The default puts one LUN on each target (unit 0), as vSphere puts
    one disk on each unit: the guest sees every disk at H:0:<target>:0.
    `tool_timeout`: seconds for one libiscsi command (discovery, inquiry).
    """

    uri: str
    host_iqn: str
    host_name: str | None = None
    portals: tuple[str, ...] = ()
    max_controllers: int = 4
    targets_per_controller: int = VIRTIO_SCSI_TARGETS
    units_per_target: int = 1
    tool_timeout: float = 30.0
    iscsi_ls: str = field(default="iscsi-ls", repr=False)
    iscsi_inq: str = field(default="iscsi-inq", repr=False)

    def __post_init__(self) -> None:
        uri = self.uri.strip()
        redact.register_url(uri)
        if "://" not in uri:
            # without a scheme nothing tells a user:password@ apart: quote only what has no '@'
            shown = "" if "@" in uri else f" {redact.redact(repr(self.uri))}"
            raise InvalidArgument(
                f"the libvirt URI{shown} is not a URI; give e.g. qemu:///system or "
                "qemu+ssh://root@kvm1/system"
            )
        object.__setattr__(self, "uri", uri)
        try:
            object.__setattr__(self, "host_iqn", san.iqn(self.host_iqn))
        except InvalidArgument as exc:
            raise InvalidArgument(f"the libvirt host IQN is invalid: {exc}") from None
        if self.host_name is not None and not self.host_name.strip():
            object.__setattr__(self, "host_name", None)
        object.__setattr__(self, "portals", tuple(str(parse_portal(p)) for p in self.portals))
        if not 1 <= self.max_controllers <= 32:
            raise InvalidArgument("libvirt max_controllers must be 1..32 (PCI slots of the guest)")
        if not 1 <= self.targets_per_controller <= VIRTIO_SCSI_TARGETS:
            raise InvalidArgument(f"libvirt targets_per_controller must be 1..{VIRTIO_SCSI_TARGETS}")
        if not 1 <= self.units_per_target <= VIRTIO_SCSI_UNITS:
            raise InvalidArgument(f"libvirt units_per_target must be 1..{VIRTIO_SCSI_UNITS}")
        if self.tool_timeout <= 0:
            raise InvalidArgument("libvirt tool_timeout must be positive")

    @classmethod
    def from_env(cls, env: Mapping[str, str]) -> LibvirtConfig:
        """From LUNBRIDGE_LIBVIRT_URI, LUNBRIDGE_HOST_IQN, and optionally
        LUNBRIDGE_LIBVIRT_HOST_NAME and LUNBRIDGE_LIBVIRT_PORTALS (comma-separated)."""
        for key in (ENV_URI, ENV_HOST_IQN):
            if not env.get(key, "").strip():
                raise InvalidArgument(f"{key} is not set; the libvirt layer needs it")
        portals = tuple(p.strip() for p in env.get(ENV_PORTALS, "").split(",") if p.strip())
        return cls(
            uri=env[ENV_URI],
            host_iqn=env[ENV_HOST_IQN],
            host_name=env.get(ENV_HOST_NAME) or None,
            portals=portals,
        )
