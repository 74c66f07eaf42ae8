"""Fixtures every unit test shares."""

from __future__ import annotations

from collections.abc import Iterator

import pytest

from lunbridge import redact


@pytest.fixture(autouse=True)
def _redaction_registry_left_as_found() -> Iterator[None]:
    """A test that registers secrets with `lunbridge.redact` leaves the registry as it was."""
    before = redact._registered
    yield
    redact._registered = before
