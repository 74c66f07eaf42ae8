"""ONTAP's REST errors as lunbridge's one error set, in one table.

An ONTAP error is `{"error": {"message", "code", "target", "arguments"}}` with an HTTP 4xx
status, or the `code` and `message` of a failed job. The codes, and which of them mean that the
wanted state is already there, are those NetApp's own clients handle (Trident's ontap-san REST
client, cinder's ONTAP REST client); lunbridge treats the latter as success, so that every
operation is idempotent."""

from __future__ import annotations

from lunbridge.errors import (
    AlreadyExists,
    Busy,
    Conflict,
    InvalidArgument,
    LimitExceeded,
    LunbridgeError,
    NotFound,
    Unauthenticated,
    Unavailable,
)

# The wanted state is already there: the caller reads the object and goes on.
ALREADY_DONE = {
    "5374035": "the initiator is already in the igroup",
    "1254207": "the LUN is already mapped to the igroup (read the map for its LUN id)",
    "1254226": "the LUN already has that size",
    "5374922": "the LUN is not mapped to the igroup",
    "5374852": "the igroup does not exist",
    "1638600": "the snapshot does not exist",
}

_INVALID = (
    "5374892", "5374124", "5374038", "5374039", "262179", "5374883", "5374884", "5374899", "917534",
    *(str(code) for code in range(5373969, 5373994)),
)  # fmt: skip

_BY_CODE: dict[str, type[LunbridgeError]] = {
    # an object of that name exists: read it and compare
    **dict.fromkeys(("5374242", "5440688", "1260136", "525059", "5374023"), AlreadyExists),
    # mapped LUN or igroup, a LUN with clones, an initiator in an igroup of another os_type
    **dict.fromkeys(("1254197", "1254213", "5376520", "5374732", "5374734"), Conflict),
    # missing LUN, clone source or job entry
    **dict.fromkeys(("1254201", "5374875", "5374876", "4"), NotFound),
    # shrink, too small, malformed initiator, unknown field, fields a clone refuses, job: too small
    **dict.fromkeys(_INVALID, InvalidArgument),
    "5374125": LimitExceeded,  # no room in the FlexVol
    "1638555": Busy,  # the snapshot is locked (a LUN clone still shares its blocks)
    # the SVM has no iSCSI / FC data interface
    **dict.fromkeys(("5374581", "5374583"), Unavailable),
}


def already_done(code: str | None) -> bool:
    """Whether an ONTAP error `code` means the wanted state is already there (`ALREADY_DONE`)."""
    return code in ALREADY_DONE


def error_for(what: str, status: int, code: str | None, message: str) -> LunbridgeError:
    """The lunbridge error for ONTAP's answer to `what` (e.g. "creating LUN /vol/v/vd-1"): by
    ONTAP's `code` first, then by the HTTP `status` (401/403 Unauthenticated, 404 NotFound, 409
    AlreadyExists, other 4xx InvalidArgument, 5xx and no answer (0) Unavailable). The message
    names the call, ONTAP's text and code."""
    text = f"ONTAP refused {what}: {message or 'no message'}" + (f" (code {code})" if code else "")
    kind = _BY_CODE.get(code or "")
    if kind is None:
        if status in (401, 403):
            kind = Unauthenticated
        elif status == 404:
            kind = NotFound
        elif status == 409:
            kind = AlreadyExists
        elif 400 <= status < 500:
            kind = InvalidArgument
        else:
            kind = Unavailable
    error = kind(text)
    error.ontap_code = code  # type: ignore[attr-defined]  # read back with `code_of`
    return error


def code_of(error: BaseException) -> str | None:
    """The ONTAP code of an error `error_for` made (None for any other error)."""
    code = getattr(error, "ontap_code", None)
    return code if isinstance(code, str) else None
