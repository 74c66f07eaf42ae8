"""The Linux SCSI target (tgtd) as a lunbridge storage server; see `backend` for the model."""

from lunbridge.storage.tgt.backend import TgtBackend
from lunbridge.storage.tgt.config import TgtConfig

__all__ = ["TgtBackend", "TgtConfig"]
