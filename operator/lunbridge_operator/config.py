"""The operator's configuration: flags, `LUNBRIDGE_*` environment variables, and the vCenter
credentials from a Secret-shaped folder or the environment.

Everything is checked before the operator starts, so a missing or wrong setting stops it
with one message that names the setting, never a value that could be a secret. Every
credential read here (the vCenter password, the secret-looking keys of a credentials folder,
of a backend's `credentialsDir`) is registered with `lunbridge.redact` before anything is
checked, so it is masked in every message and log line from then on.
"""

from __future__ import annotations

import argparse
import os
import random
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from pathlib import Path

import yaml

from lunbridge import redact
from lunbridge.errors import InvalidArgument
from lunbridge.hypervisor.base import Scope
from lunbridge.hypervisor.libvirt import LibvirtConfig
from lunbridge.hypervisor.vsphere import VSphereConfig
from lunbridge.san import Transport
from lunbridge.storage.factory import LEGACY_BACKEND, BackendConfig, check, check_secrets, parse_backends


class ConfigError(Exception):
    """The operator cannot start with these settings; the message says which and why (and
    shows no secret: it is redacted like every LunbridgeError)."""

    def __init__(self, message: str) -> None:
        super().__init__(redact.redact(message))

    def __str__(self) -> str:
        return redact.redact(super().__str__())


@dataclass(frozen=True)
class OperatorConfig:
    vsphere: VSphereConfig | None = field(repr=False)  # at least one hypervisor is configured
    libvirt: LibvirtConfig | None
    backends: list[BackendConfig]  # at least one; one of them the default
    transport: Transport = Transport.ISCSI
    default_scope: Scope | None = None  # None: cluster for clustered hosts, host otherwise
    standalone: bool = False
    peering: str = "lunbridge"
    priority: int = 0
    metrics_port: int = 8080
    liveness: str | None = None
    resync_seconds: float = 60.0
    retry_scale: float = 1.0  # every retry delay is multiplied by it
    sweep_seconds: float = 600.0  # orphan report on start and this often; 0 = off
    disk_slots: int = 256  # VirtualDisk reconciles and teardowns that run at once
    api_connections: int = 64  # API server connections for requests, besides the watch streams
    log_format: str = "plain"


def _truthy(value: str | None) -> bool:
    return (value or "").lower() in ("1", "true", "yes")


def _option(group: argparse._ArgumentGroup, flag: str, help_text: str, default: str | None = None,
            **kwargs: object) -> None:  # fmt: skip
    """`--flag`, defaulting to the environment variable LUNBRIDGE_<FLAG> (named in the help)."""
    variable = "LUNBRIDGE_" + flag.removeprefix("--").replace("-", "_").upper()
    value: object = os.environ.get(variable, default)
    if kwargs.get("action") == "store_true":
        value = _truthy(os.environ.get(variable))
    elif "type" in kwargs and value is not None:
        try:
            value = kwargs["type"](value)  # type: ignore[operator]
        except ValueError:
            raise ConfigError(f"{variable} must be a number, not {value!r}") from None
    group.add_argument(flag, default=value, help=f"{help_text} ({variable})", **kwargs)  # type: ignore[arg-type]


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(
        prog="lunbridge-operator",
        description=(
            "Reconcile lunbridge VirtualDisk and InitiatorGroup objects: create LUNs on the storage "
            "server, mask them to the hypervisor host's initiators and attach them to the node's VM "
            "as raw device mappings."
        ),
        epilog=(
            "Every option can also be given as the environment variable named with it. The vCenter "
            "password is read only from LUNBRIDGE_VSPHERE_PASSWORD or the credentials folder."
        ),
    )
    vs = parser.add_argument_group("vCenter")
    _option(vs, "--vsphere-credentials", "folder of a mounted Secret: url, username, password "
            "[, thumbprint, ca.crt, insecure]", metavar="DIR")  # fmt: skip
    _option(vs, "--vsphere-url", "vCenter SDK URL, https://host/sdk")
    _option(vs, "--vsphere-user", "vCenter user")
    _option(vs, "--vsphere-thumbprint", "SHA-256 of the vCenter certificate to pin")
    _option(vs, "--vsphere-ca-file", "PEM bundle to verify vCenter's certificate with")
    _option(vs, "--vsphere-insecure", "do not verify vCenter's certificate", action="store_true")
    kvm = parser.add_argument_group("KVM host (libvirt)")
    _option(kvm, "--libvirt-uri", "libvirt URI of a KVM host, e.g. qemu:///system")
    _option(kvm, "--host-iqn", "the KVM host's iSCSI initiator name (QEMU logs in with it)")
    st = parser.add_argument_group("storage backends")
    _option(st, "--backends-file", "YAML or JSON file with the `backends` list: name, type, default, "
            "credentialsDir, chapDir, settings (see README)", metavar="FILE")  # fmt: skip
    st = parser.add_argument_group("one tgtd backend named tgt (instead of --backends-file)")
    _option(st, "--tgt-portal", "iSCSI portal host:port that hosts log in to")
    _option(st, "--tgt-node-portals", "comma-separated host:port that nodes logging in with their own "
            "initiators reach tgtd at (default: --tgt-portal)")  # fmt: skip
    _option(st, "--tgt-control-port", "tgtd control socket number (tgtd -C N)")
    _option(st, "--tgt-pool-dir", "folder for the LUNs' sparse files")
    _option(st, "--tgt-state-file", "the backend's state file (default <pool dir>/tgt-state.json)")
    _option(
        st, "--tgt-iqn-prefix", "prefix of the target IQNs this operator owns", "iqn.2024-01.io.lunbridge:"
    )
    op = parser.add_argument_group("operator")
    _option(op, "--protocol", "SAN transport of the initiator groups", "iscsi",
            choices=[t.value for t in Transport])  # fmt: skip
    _option(op, "--default-scope", "igroup scope of disks that set none (auto: cluster for clustered hosts)",
            "auto", choices=["auto", *[s.value for s in Scope]])  # fmt: skip
    _option(op, "--standalone", "run without peering: one replica only", action="store_true")
    _option(op, "--peering", "ClusterKopfPeering shared by the replicas", "lunbridge")
    _option(op, "--metrics-port", "Prometheus metrics port, 0 = off", "8080", type=int)
    _option(op, "--liveness", "liveness endpoint, e.g. http://0.0.0.0:8081/healthz")
    _option(op, "--resync-seconds", "how often Ready objects are checked again", "60", type=float)
    _option(op, "--retry-scale", "multiplies every retry delay (by fault 5-120 s, transient faults "
            "doubling up to 5 min): below 1 retries sooner (a lab), above 1 spares a busy vCenter", "1",
            type=float)  # fmt: skip
    _option(op, "--sweep-seconds", "report orphan LUNs, maps and RDMs on start and this often, 0 = off",
            "600", type=float)  # fmt: skip
    _option(op, "--disk-slots", "how many VirtualDisk reconciles and teardowns run at once (256); the "
            "rest of a burst waits its turn", "256", type=int)  # fmt: skip
    _option(op, "--api-connections", "how many connections to the API server carry requests at once "
            "(64), besides the watch streams; further requests wait for one", "64", type=int)  # fmt: skip
    _option(op, "--log-format", "plain lines, or one JSON object per line for log collectors", "plain",
            choices=["plain", "json"])  # fmt: skip
    return parser


def _secret_folder(folder: str) -> dict[str, str]:
    path = Path(folder)
    if not path.is_dir():
        raise ConfigError(f"--vsphere-credentials {folder}: no such folder (mount the Secret there)")
    data = {
        item.name: item.read_text()
        for item in path.iterdir()
        if item.is_file() and not item.name.startswith(".")
    }
    _register_secrets(data)
    return data


def _register_secrets(data: Mapping[str, str]) -> None:
    """Register the values of a Secret's secret-looking keys (password, token, *secret, *key)."""
    for key, value in data.items():
        if redact.is_secret_name(key):
            redact.register(value)
            redact.register(value.rstrip("\r\n"))  # what `echo pw | base64` leaves behind


def _backend_credentials(configs: Sequence[BackendConfig]) -> None:
    """Register the credentials of every backend's `credentialsDir` (the backend reads them
    itself later; a folder that cannot be read here is the backend's to report)."""
    for config in configs:
        _register_secrets({key: value for key, value in config.settings.items() if isinstance(value, str)})
        folder = config.credentials_dir
        if folder is None or not folder.is_dir():
            continue
        data = {}
        for item in folder.iterdir():
            if item.is_file() and not item.name.startswith("."):
                try:
                    data[item.name] = item.read_text()
                except (OSError, UnicodeDecodeError):
                    continue
        _register_secrets(data)


def _libvirt(args: argparse.Namespace, environ: Mapping[str, str]) -> LibvirtConfig | None:
    if not args.libvirt_uri:
        return None
    if not args.host_iqn:
        raise ConfigError("LUNBRIDGE_LIBVIRT_URI is set but LUNBRIDGE_HOST_IQN (--host-iqn) is not")
    try:
        return LibvirtConfig.from_env(
            {**environ, "LUNBRIDGE_LIBVIRT_URI": args.libvirt_uri, "LUNBRIDGE_HOST_IQN": args.host_iqn}
        )
    except InvalidArgument as exc:
        raise ConfigError(str(exc)) from None


def _vsphere(args: argparse.Namespace, environ: Mapping[str, str], required: bool) -> VSphereConfig | None:
    password = environ.get("LUNBRIDGE_VSPHERE_PASSWORD")
    redact.register(password)
    redact.register_url(args.vsphere_url)
    if not required and not any((args.vsphere_credentials, args.vsphere_url, args.vsphere_user, password)):
        return None
    if args.vsphere_credentials:
        data = _secret_folder(args.vsphere_credentials)
    else:
        given = {
            "LUNBRIDGE_VSPHERE_URL (--vsphere-url)": args.vsphere_url,
            "LUNBRIDGE_VSPHERE_USER (--vsphere-user)": args.vsphere_user,
            "LUNBRIDGE_VSPHERE_PASSWORD": environ.get("LUNBRIDGE_VSPHERE_PASSWORD"),
        }
        missing = [name for name, value in given.items() if not value]
        if missing:
            raise ConfigError(
                "no hypervisor is configured: for vCenter set " + ", ".join(missing) + " or "
                "--vsphere-credentials DIR; for a KVM host set LUNBRIDGE_LIBVIRT_URI and LUNBRIDGE_HOST_IQN"
            )
        data = {"url": args.vsphere_url, "username": args.vsphere_user,
                "password": environ["LUNBRIDGE_VSPHERE_PASSWORD"]}  # fmt: skip
    if args.vsphere_thumbprint:
        data["thumbprint"] = args.vsphere_thumbprint
    if args.vsphere_ca_file:
        try:
            data["ca_bundle"] = Path(args.vsphere_ca_file).read_text()
        except OSError as exc:
            raise ConfigError(f"--vsphere-ca-file {args.vsphere_ca_file}: {exc.strerror}") from None
    if args.vsphere_insecure:
        data["insecure"] = "true"
    try:
        return VSphereConfig.from_secret(data)
    except InvalidArgument as exc:
        raise ConfigError(str(exc)) from None


def _legacy_tgt(args: argparse.Namespace) -> list[BackendConfig]:
    """One tgt backend named `tgt` from the LUNBRIDGE_TGT_* settings (the releases before
    backends had names were configured this way)."""
    given = {
        "LUNBRIDGE_TGT_PORTAL (--tgt-portal)": args.tgt_portal,
        "LUNBRIDGE_TGT_CONTROL_PORT (--tgt-control-port)": args.tgt_control_port,
        "LUNBRIDGE_TGT_POOL_DIR (--tgt-pool-dir)": args.tgt_pool_dir,
    }
    missing = [name for name, value in given.items() if not value]
    if len(missing) == len(given):
        raise ConfigError(
            "no storage backend is configured: set LUNBRIDGE_BACKENDS_FILE (--backends-file), or for one "
            "tgtd " + ", ".join(given)
        )
    if missing:
        raise ConfigError("the tgtd storage backend is not configured: set " + ", ".join(missing))
    settings = {"portal": args.tgt_portal, "controlPort": args.tgt_control_port, "poolDir": args.tgt_pool_dir,
                "stateFile": args.tgt_state_file, "iqnPrefix": args.tgt_iqn_prefix,
                "nodePortals": args.tgt_node_portals}  # fmt: skip
    return [BackendConfig(LEGACY_BACKEND, "tgt", {k: v for k, v in settings.items() if v}, default=True)]


def _backends(args: argparse.Namespace) -> list[BackendConfig]:
    if args.backends_file:
        if args.tgt_portal or args.tgt_control_port or args.tgt_pool_dir or args.tgt_node_portals:
            raise ConfigError(
                "both --backends-file and LUNBRIDGE_TGT_* are set: put the tgtd backend in the file's list"
            )
        try:
            data = yaml.safe_load(Path(args.backends_file).read_text())
        except OSError as exc:
            raise ConfigError(f"--backends-file {args.backends_file}: {exc.strerror}") from None
        except yaml.YAMLError as exc:
            raise ConfigError(f"--backends-file {args.backends_file} is not YAML or JSON: {exc}") from None
        sections = data.get("backends") if isinstance(data, dict) else data
        configs = parse_backends(sections)
    else:
        configs = _legacy_tgt(args)
    _backend_credentials(configs)
    for config in configs:  # every section's settings are checked before the operator starts
        check(config)
        check_secrets(config)
    return configs


def _non_negative(flag: str, value: float) -> float:
    if not value >= 0:  # NaN too
        raise ConfigError(f"{flag} must be a number of seconds >= 0, not {value!r}")
    return value


def _positive(flag: str, value: float) -> float:
    if not value > 0:  # NaN too
        raise ConfigError(f"{flag} must be a number > 0, not {value!r}")
    return value


def load(argv: Sequence[str] | None = None, environ: Mapping[str, str] | None = None) -> OperatorConfig:
    """Parse flags and environment into a checked configuration (ConfigError otherwise)."""
    environ = os.environ if environ is None else environ
    args = build_parser().parse_args(argv)
    libvirt = _libvirt(args, environ)
    vsphere = _vsphere(args, environ, required=libvirt is None)
    try:
        backends = _backends(args)
    except InvalidArgument as exc:
        raise ConfigError(str(exc)) from None
    return OperatorConfig(
        vsphere=vsphere,
        libvirt=libvirt,
        backends=backends,
        transport=Transport(args.protocol),
        default_scope=None if args.default_scope == "auto" else Scope(args.default_scope),
        standalone=args.standalone,
        peering=args.peering,
        priority=random.randint(1, 1_000_000),
        metrics_port=args.metrics_port,
        liveness=args.liveness,
        resync_seconds=args.resync_seconds,
        retry_scale=_positive("--retry-scale", args.retry_scale),
        sweep_seconds=_non_negative("--sweep-seconds", args.sweep_seconds),
        disk_slots=int(_positive("--disk-slots", args.disk_slots)),
        api_connections=int(_positive("--api-connections", args.api_connections)),
        log_format=args.log_format,
    )
