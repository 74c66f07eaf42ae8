"""Storage backends by name: the only module that names the backend types.

The operator is configured with a list of backends, each a section
`{name, type, default?, credentialsDir?, chapDir?, settings: {...}}`; this module checks the list
(names unique DNS labels, a known type, at most one default), builds each backend from its
section, and hands out `Backends`, which resolves the backend a disk asks for by name.
Credentials are never part of a section: `credentialsDir` names the folder a Secret is
mounted at, and only the backend reads it; `chapDir` names the folder of the CHAP Secret
that nodes logging in with their own initiators must use (`lunbridge.storage.chap`).
"""

from __future__ import annotations

import re
from collections.abc import Callable, Iterator, Mapping, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from lunbridge.errors import InvalidArgument
from lunbridge.storage import chap
from lunbridge.storage.base import Chap, StorageBackend
from lunbridge.storage.ontap import OntapConfig
from lunbridge.storage.tgt import TgtBackend, TgtConfig

_NAME = re.compile(r"^[a-z0-9]([-a-z0-9]{0,61}[a-z0-9])?$")
_SECTION_KEYS = {"name", "type", "default", "credentialsDir", "chapDir", "settings"}
# a disk status written before backends had names records "tgt"; it means the default backend
LEGACY_BACKEND = "tgt"


@dataclass(frozen=True)
class BackendConfig:
    """One backend section. `settings` are the type's own (checked by its builder)."""

    name: str
    type: str
    settings: Mapping[str, Any] = field(default_factory=dict)
    credentials_dir: Path | None = None
    default: bool = False
    chap_dir: Path | None = None  # the CHAP Secret of initiator-mode nodes' igroups


def _tgt_config(config: BackendConfig) -> TgtConfig:
    return TgtConfig.from_settings(config.settings, f"backend {config.name} settings")


def _ontap_config(config: BackendConfig) -> OntapConfig:
    return OntapConfig.from_settings(config.settings, f"backend {config.name} settings")


def _ontap(config: BackendConfig) -> StorageBackend:
    from lunbridge.storage.ontap import OntapBackend  # NetApp's library, only where it is used

    return OntapBackend.from_folder(_ontap_config(config), config.credentials_dir, f"backend {config.name}")


BUILDERS: Mapping[str, Callable[[BackendConfig], StorageBackend]] = {
    "tgt": lambda config: TgtBackend(_tgt_config(config)),
    "ontap": _ontap,
}
CHECKS: Mapping[str, Callable[[BackendConfig], object]] = {"tgt": _tgt_config, "ontap": _ontap_config}


def parse_backends(sections: Any) -> list[BackendConfig]:
    """The checked `backends` list; InvalidArgument names the bad field (`backends[1].type`)."""
    if not isinstance(sections, list) or not sections:
        raise InvalidArgument("backends must be a non-empty list of {name, type, settings} sections")
    configs: list[BackendConfig] = []
    for index, section in enumerate(sections):
        where = f"backends[{index}]"
        if not isinstance(section, dict):
            raise InvalidArgument(f"{where} must be a mapping with name, type and settings")
        unknown = set(section) - _SECTION_KEYS
        if unknown:
            raise InvalidArgument(
                f"{where} has unknown keys {', '.join(sorted(unknown))}; a section has "
                f"{', '.join(sorted(_SECTION_KEYS))}"
            )
        name, kind = section.get("name"), section.get("type")
        if not isinstance(name, str) or not _NAME.match(name):
            raise InvalidArgument(f"{where}.name {name!r} must be a DNS label (lowercase, digits, '-')")
        if any(c.name == name for c in configs):
            raise InvalidArgument(f"{where}.name {name!r} is used twice")
        if kind not in BUILDERS:
            raise InvalidArgument(f"{where}.type {kind!r} is not one of {', '.join(sorted(BUILDERS))}")
        settings = section.get("settings") or {}
        if not isinstance(settings, dict):
            raise InvalidArgument(f"{where}.settings must be a mapping")
        credentials, chap_dir = section.get("credentialsDir"), section.get("chapDir")
        configs.append(BackendConfig(name, str(kind), settings, Path(credentials) if credentials else None,
                                     bool(section.get("default")),
                                     Path(chap_dir) if chap_dir else None))  # fmt: skip
    defaults = [c.name for c in configs if c.default]
    if len(defaults) > 1:
        raise InvalidArgument(f"backends {', '.join(defaults)} are all marked default; mark one")
    return configs


def check(config: BackendConfig) -> None:
    """Check a section's settings without connecting (InvalidArgument naming the field)."""
    CHECKS[config.type](config)


def check_secrets(config: BackendConfig) -> None:
    """Read the CHAP Secret a section names, as the operator does at start (InvalidArgument
    naming the key); the mounted folder exists only where the operator runs."""
    if config.chap_dir is not None:
        chap.from_folder(config.chap_dir)


def build(config: BackendConfig) -> StorageBackend:
    """The backend of one section (its settings checked: InvalidArgument naming the field)."""
    return BUILDERS[config.type](config)


class Backends:
    """The operator's storage backends by name, one of them the default."""

    def __init__(
        self,
        backends: Mapping[str, StorageBackend],
        default: str,
        chap_dirs: Mapping[str, Path] | None = None,
    ) -> None:
        if default not in backends:
            raise InvalidArgument(f"default backend {default!r} is not one of {', '.join(backends)}")
        self._backends = dict(backends)
        self.default = default
        self._chap_dirs = dict(chap_dirs or {})

    @classmethod
    def from_configs(cls, configs: Sequence[BackendConfig]) -> Backends:
        default = next((c.name for c in configs if c.default), configs[0].name)
        chap_dirs = {c.name: c.chap_dir for c in configs if c.chap_dir is not None}
        return cls({c.name: build(c) for c in configs}, default, chap_dirs)

    def chap(self, name: str) -> Chap | None:
        """The CHAP the node igroups of backend `name` take (read from its `chapDir` now, so a
        rotated Secret is used); None without one. InvalidArgument when the Secret is unusable."""
        folder = self._chap_dirs.get(name)
        return None if folder is None else chap.from_folder(folder)

    @property
    def names(self) -> list[str]:
        return sorted(self._backends)

    def __iter__(self) -> Iterator[tuple[str, StorageBackend]]:
        return iter(sorted(self._backends.items()))

    def get(self, name: str | None, field_path: str = "spec.backend") -> tuple[str, StorageBackend]:
        """(name, backend) for `name` (None: the default); InvalidArgument naming the known ones."""
        chosen = name or self.default
        try:
            return chosen, self._backends[chosen]
        except KeyError:
            raise InvalidArgument(
                f"{field_path} {chosen!r} is not a storage backend of this operator; "
                f"the backends are {', '.join(self.names)} (default {self.default})"
            ) from None

    def recorded(self, name: str | None) -> str | None:
        """The backend a status names, as a configured name: the legacy `tgt` of disks made
        before backends had names is the default backend; None when nothing is recorded."""
        if name is None or name in self._backends:
            return name
        return self.default if name == LEGACY_BACKEND else name

    async def close(self) -> None:
        for _, backend in self:
            await backend.close()
