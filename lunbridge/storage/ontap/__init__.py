"""A NetApp ONTAP cluster's SVM as a lunbridge storage server, through the ONTAP REST API (see
`backend`).

`OntapBackend` is imported on first use: NetApp's library costs the operator about 25 MiB of
memory, which a cluster without an ontap backend should not pay."""

from __future__ import annotations

from typing import TYPE_CHECKING, Any

from lunbridge.storage.ontap.config import OntapConfig

if TYPE_CHECKING:
    from lunbridge.storage.ontap.backend import OntapBackend

__all__ = ["OntapBackend", "OntapConfig"]


def __getattr__(name: str) -> Any:
    if name == "OntapBackend":
        from lunbridge.storage.ontap.backend import OntapBackend

        return OntapBackend
    raise AttributeError(f"module {__name__!r} has no attribute {name!r}")
