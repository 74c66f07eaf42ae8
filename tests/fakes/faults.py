"""Call logging and fault injection shared by the fakes: every public call is recorded before
it acts, and an error queued with `fail_next` is raised instead of the call's effect (the
request never reached the peer), so a test can fail exactly one step of a reconcile."""

from __future__ import annotations

from collections import deque
from dataclasses import dataclass
from typing import Any, TypeVar

from lunbridge.errors import NotFound

K = TypeVar("K")
V = TypeVar("V")


def need(table: dict[K, V], key: K, what: str) -> V:
    """`table[key]`, or NotFound saying `what` does not exist (as every peer answers)."""
    try:
        return table[key]
    except KeyError:
        raise NotFound(f"{what} does not exist") from None


@dataclass(frozen=True)
class Call:
    method: str
    args: tuple[Any, ...]


class Faults:
    def __init__(self) -> None:
        self.calls: list[Call] = []
        self._faults: dict[str, deque[Exception]] = {}

    def fail_next(self, method: str, error: Exception, times: int = 1) -> None:
        """Make the next `times` calls of `method` raise `error` and change nothing."""
        if not callable(getattr(self, method, None)):
            raise AttributeError(f"{type(self).__name__} has no method {method!r} to fail")
        self._faults.setdefault(method, deque()).extend([error] * times)

    def called(self, method: str) -> list[tuple[Any, ...]]:
        """The arguments of every call of `method`, in order."""
        return [call.args for call in self.calls if call.method == method]

    def _record(self, method: str, *args: Any) -> None:
        self.calls.append(Call(method, args))
        queued = self._faults.get(method)
        if queued:
            raise queued.popleft()
