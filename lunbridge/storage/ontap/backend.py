"""The ontap backend: a NetApp ONTAP SVM as a lunbridge storage server, through ONTAP's REST
API and NetApp's own client library (`netapp-ontap`).

- `config`: the backend section's settings; `_rest`: the only module that imports the library,
  its blocking calls in a bounded pool (`maxConcurrentCalls` per cluster); `client`: the calls as
  coroutines, scoped to the SVM, with ONTAP's jobs polled with a bound; `errors`: ONTAP's codes
  as lunbridge's errors, in one table; `identity`: NAA from serial, ONTAP's size rounding.
- `core` (the layout: one FlexVol per LUN, and why), `luns` (pools and LUNs), `snapshots`
  (snapshots, clones, restores), `groups` (igroups, maps, CHAP, portals).

Credentials come from the backend's Secret (`credentialsDir`: `username`, `password`); TLS is
verified unless `tlsVerify` is false, against `caFile` when given.
"""

from __future__ import annotations

from pathlib import Path

from lunbridge.errors import InvalidArgument
from lunbridge.storage.ontap._rest import read_credentials
from lunbridge.storage.ontap.client import OntapClient
from lunbridge.storage.ontap.config import OntapConfig
from lunbridge.storage.ontap.groups import GroupOperations
from lunbridge.storage.ontap.luns import LunOperations
from lunbridge.storage.ontap.snapshots import SnapshotOperations


class OntapBackend(LunOperations, SnapshotOperations, GroupOperations):
    """`StorageBackend` on one SVM. Raises only `lunbridge.errors`."""

    @classmethod
    def from_folder(cls, config: OntapConfig, credentials_dir: Path | None, where: str) -> OntapBackend:
        """The backend with the credentials of the Secret mounted at `credentials_dir`."""
        if credentials_dir is None:
            raise InvalidArgument(
                f"{where} needs credentialsDir: the folder its Secret (username, password) is mounted at"
            )
        username, password = read_credentials(credentials_dir, where)
        return cls(OntapClient(config, username, password))

    async def close(self) -> None:
        await self.client.close()
