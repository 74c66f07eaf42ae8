"""ONTAP's error answer, `{"error": {"message", "code", "target"}}`, as one exception type.

Every refusal of the simulator is raised as an `OntapError` deep in a handler and turned into
the HTTP answer in one place (the server), or into a failed job; the codes chosen are listed
here once so that the README and the handlers cannot drift apart.
"""

from __future__ import annotations

from typing import Any

# the ONTAP codes the simulator answers with (README "Errors" says where each comes from)
GENERIC_EXISTS = "1"
GENERIC_NOT_FOUND = "4"
GENERIC_IN_USE = "8"
UNEXPECTED_APP_ERROR = "262145"
UNEXPECTED_ARGUMENT = "262179"
NO_VALUES = "262190"
NOT_SETTABLE = "262196"
INVALID_VALUE = "262197"
BODY_NOT_ALLOWED = "262198"
INVALID_JSON = "262199"
POST_FILTER = "262211"
MISSING_VALUE = "262212"
NOT_AUTHORIZED = "6"
SVM_NOT_FOUND = "2621462"
VOLUME_NOT_FOUND = "917927"
VOLUME_BAD_NAME = "917888"
VOLUME_TOO_SMALL = "917534"
LUN_EXISTS = "5374242"
LUN_CLONE_EXISTS = "1260136"
LUN_TOO_SMALL = "5374124"
LUN_TOO_LARGE = "5374125"
LUN_SHRINK = "5374892"
LUN_SAME_SIZE = "1254226"
LUN_MAPPED = "1254197"
LUN_CLONE_OS_TYPE = "5374883"
LUN_CLONE_SIZE = "5374884"
LUN_CLONE_SOURCE_MISSING = "5374875"
LUN_CLONE_SOURCE_UUID = "5374899"
IGROUP_EXISTS = "5374023"
IGROUP_MAPPED = "1254213"
IGROUP_NOT_FOUND = "5374852"
INITIATOR_PRESENT = "5374035"
INITIATOR_BAD_NAME = "5373977"
INITIATOR_OS_TYPE_CLASH = "5374732"
MAP_EXISTS = "1254207"
MAP_LUN_MISSING = "1254201"
MAP_MISSING = "5374922"
SNAPSHOT_EXISTS = "525059"
SNAPSHOT_MISSING = "1638600"
SNAPSHOT_BUSY = "1638555"


class OntapError(Exception):
    """A refusal as ONTAP words it: HTTP status, ONTAP code (a string), message, target."""

    def __init__(self, status: int, code: str, message: str, target: str | None = None) -> None:
        super().__init__(message)
        self.status = status
        self.code = code
        self.message = message
        self.target = target

    def body(self) -> dict[str, Any]:
        error: dict[str, Any] = {"message": self.message, "code": self.code}
        if self.target is not None:
            error["target"] = self.target
        return {"error": error}


def bad(code: str, message: str, target: str | None = None) -> OntapError:
    return OntapError(400, code, message, target)


def not_found(what: str, code: str = GENERIC_NOT_FOUND) -> OntapError:
    return OntapError(404, code, f"{what} does not exist.")


def exists(code: str, message: str, target: str | None = None) -> OntapError:
    return OntapError(409, code, message, target)
