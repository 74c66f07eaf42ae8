"""A NetApp ONTAP cluster's SVM as a lunbridge storage server, through the ONTAP REST API (see
`backend`)."""

from lunbridge.storage.ontap.backend import OntapBackend
from lunbridge.storage.ontap.config import OntapConfig

__all__ = ["OntapBackend", "OntapConfig"]
