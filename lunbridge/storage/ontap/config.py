"""Configuration of the ontap backend: a backend section's `settings`, checked field by field.

The management address is HTTPS with TLS verified unless turned off by name; credentials are
never settings (they come from the backend's Secret, `credentialsDir`), so a URL carrying a user
or password is refused rather than stored or logged."""

from __future__ import annotations

import re
from collections.abc import Mapping
from dataclasses import dataclass
from pathlib import Path
from typing import Any
from urllib.parse import urlsplit

from lunbridge.errors import InvalidArgument

# the igroup os_types ONTAP knows (its igroup schema's enum)
OS_TYPES = ("aix", "hpux", "hyper_v", "linux", "netware", "openvms", "solaris", "vmware", "windows", "xen")
# ONTAP's FlexVol names take letters, digits and '_' only: lunbridge's FlexVols are <prefix><id>
_FLEXVOL_PREFIX = re.compile(r"^[A-Za-z_][A-Za-z0-9_]{0,19}$")
_FLEXVOL_RULE = "1-20 letters, digits and '_' (ONTAP's FlexVol names allow no '-'), not starting with a digit"
_SVM = re.compile(r"^[A-Za-z0-9_][A-Za-z0-9_.\-]{0,46}$")
# at most 96 characters: the pool's name goes into each LUN's comment (ONTAP keeps 254)
_AGGREGATE = re.compile(r"^[A-Za-z_][A-Za-z0-9_]{0,95}$")
_PORTAL = re.compile(r"^(?:\[[0-9a-fA-F:.]+\]|[A-Za-z0-9.-]+):(\d{1,5})$")
_SETTINGS = {
    "managementUrl",
    "svm",
    "aggregates",
    "tlsVerify",
    "caFile",
    "spaceReservation",
    "igroupOsType",
    "dataInterfaces",
    "flexvolPrefix",
    "maxConcurrentCalls",
    "jobTimeoutSeconds",
}
_TRUE, _FALSE = {"true", "yes", "1"}, {"false", "no", "0"}


@dataclass(frozen=True)
class OntapConfig:
    management_url: str  # https://host[:port] of the cluster's or the SVM's management interface
    svm: str  # every call is scoped to this SVM
    aggregates: tuple[str, ...] = ()  # where FlexVols go; empty: the SVM's own aggregates
    tls_verify: bool = True
    ca_file: Path | None = None  # the CA that signed the management certificate; None: the system's
    space_reservation: bool = False  # thick LUNs; false: thin, as Trident makes them
    igroup_os_type: str | None = None  # None: from the hypervisor (vmware for ESXi, linux for KVM)
    # where initiators reach the SVM (host:port each); empty: its iSCSI data interfaces that are up
    data_interfaces: tuple[str, ...] = ()
    flexvol_prefix: str = "lb_"
    max_concurrent_calls: int = 20  # per cluster, as Trident
    job_timeout: float = 120.0  # seconds an asynchronous ONTAP job may take

    @classmethod
    def from_settings(cls, settings: Mapping[str, Any], where: str = "settings") -> OntapConfig:
        """A backend section's settings: `managementUrl`, `svm`, [`aggregates` (list),
        `tlsVerify`, `caFile`, `spaceReservation`, `igroupOsType`, `dataInterfaces` (list of
        host:port), `flexvolPrefix`, `maxConcurrentCalls`, `jobTimeoutSeconds`].
        InvalidArgument names the missing or bad field (`<where>.svm`)."""
        unknown = set(settings) - _SETTINGS
        if unknown:
            raise InvalidArgument(
                f"{where} has unknown keys {', '.join(sorted(unknown))}; "
                f"ontap takes {', '.join(sorted(_SETTINGS))}"
            )
        missing = [key for key in ("managementUrl", "svm") if settings.get(key) in (None, "")]
        if missing:
            raise InvalidArgument(f"{where} lacks {', '.join(missing)}")
        return cls(
            management_url=_management_url(settings["managementUrl"], f"{where}.managementUrl"),
            svm=_matching(settings["svm"], _SVM, f"{where}.svm", "1-47 letters, digits, '_', '.', '-'"),
            aggregates=tuple(
                _matching(name, _AGGREGATE, f"{where}.aggregates", "1-96 letters, digits and '_'")
                for name in _listed(settings.get("aggregates"), f"{where}.aggregates")
            ),
            tls_verify=_flag(settings.get("tlsVerify", True), f"{where}.tlsVerify"),
            ca_file=Path(settings["caFile"]) if settings.get("caFile") else None,
            space_reservation=_flag(settings.get("spaceReservation", False), f"{where}.spaceReservation"),
            igroup_os_type=_os_type(settings.get("igroupOsType"), f"{where}.igroupOsType"),
            data_interfaces=tuple(
                _portal(p, f"{where}.dataInterfaces")
                for p in _listed(settings.get("dataInterfaces"), f"{where}.dataInterfaces")
            ),
            flexvol_prefix=_matching(
                settings.get("flexvolPrefix", cls.flexvol_prefix),
                _FLEXVOL_PREFIX,
                f"{where}.flexvolPrefix",
                _FLEXVOL_RULE,
            ),
            max_concurrent_calls=int(
                _number(
                    settings.get("maxConcurrentCalls", cls.max_concurrent_calls),
                    f"{where}.maxConcurrentCalls",
                    1,
                    100,
                    whole=True,
                )
            ),
            job_timeout=_number(
                settings.get("jobTimeoutSeconds", cls.job_timeout), f"{where}.jobTimeoutSeconds", 1, 3600
            ),
        )


def _management_url(value: Any, where: str) -> str:
    parts = urlsplit(value) if isinstance(value, str) else None
    if parts is None or parts.scheme != "https" or not parts.hostname:
        raise InvalidArgument(f"{where} must be https://host[:port] (ONTAP's REST API is HTTPS only)")
    if parts.username or parts.password:
        raise InvalidArgument(f"{where} must not carry credentials (they belong in the backend's Secret)")
    try:
        port = parts.port
    except ValueError:
        port = -1
    if (port is not None and not 0 < port < 65536) or parts.path.strip("/") or parts.query:
        raise InvalidArgument(f"{where} must be https://host[:port], with no path or query")
    return f"https://{parts.netloc}"


def _matching(value: Any, pattern: re.Pattern[str], where: str, rule: str) -> str:
    if not isinstance(value, str) or not pattern.match(value):
        raise InvalidArgument(f"{where} {value!r} is invalid: {rule}")
    return value


def _listed(value: Any, where: str) -> list[Any]:
    if value in (None, ""):
        return []
    if isinstance(value, str):
        return [item.strip() for item in value.split(",") if item.strip()]
    if not isinstance(value, list):
        raise InvalidArgument(f"{where} must be a list (or one comma-separated string)")
    return value


def _flag(value: Any, where: str) -> bool:
    if isinstance(value, bool):
        return value
    if isinstance(value, str) and value.lower() in _TRUE | _FALSE:
        return value.lower() in _TRUE
    raise InvalidArgument(f"{where} must be true or false, not {value!r}")


def _os_type(value: Any, where: str) -> str | None:
    if value in (None, ""):
        return None
    if value not in OS_TYPES:
        raise InvalidArgument(f"{where} {value!r} is not an ONTAP igroup os_type: {', '.join(OS_TYPES)}")
    return str(value)


def _portal(value: Any, where: str) -> str:
    match = _PORTAL.match(value) if isinstance(value, str) else None
    if not match or not 0 < int(match.group(1)) < 65536:
        raise InvalidArgument(f"{where} {value!r} must be host:port, e.g. 192.0.2.20:3260")
    return str(value)


def _number(value: Any, where: str, low: float, high: float, whole: bool = False) -> float:
    try:
        number = float(value) if not isinstance(value, bool) else float("nan")
    except (TypeError, ValueError):
        number = float("nan")
    if not low <= number <= high or (whole and not number.is_integer()):
        kind = "a whole number" if whole else "a number"
        raise InvalidArgument(f"{where} must be {kind} from {low:g} to {high:g}, not {value!r}")
    return number
