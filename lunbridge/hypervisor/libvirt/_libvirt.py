"""The only module that imports the `libvirt` binding (libvirt-python; checked by import-linter).

The binding has no type information, so its handles are re-exported here as `Any`: the rest
of the libvirt layer names them through this module and turns what they return (XML text,
numbers) into typed dataclasses at once. Importing it also silences libvirt's default error
handler, which would otherwise print every error to stderr besides raising it.
"""

from __future__ import annotations

from typing import Any

import libvirt as _binding

libvirt: Any = _binding

# What every failing libvirt call raises; `get_error_code()` / `get_error_domain()` tell which.
LibvirtError: type[Exception] = _binding.libvirtError


def _quiet(_context: object, _error: object) -> None:
    """Errors are raised as LibvirtError and translated; printing them too would only add noise."""


_binding.registerErrorHandler(_quiet, None)


def open_connection(uri: str) -> Any:
    """A read-write connection to `uri` (raises LibvirtError)."""
    return _binding.open(uri)
