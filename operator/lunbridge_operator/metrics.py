"""Prometheus metrics of the reconcile steps (how many, how long, how many failed, by step) and
of the orphan sweep (what it found, by kind and backend)."""

from __future__ import annotations

import time
from collections.abc import Iterator
from contextlib import contextmanager

from prometheus_client import Counter, Gauge, Histogram, start_http_server

STEPS = Counter("lunbridge_reconcile_steps_total", "Reconcile steps run", ["kind", "step"])
ERRORS = Counter("lunbridge_reconcile_errors_total", "Reconcile steps that failed", ["kind", "step", "error"])
DURATION = Histogram(
    "lunbridge_reconcile_step_seconds",
    "Time of one reconcile step",
    ["kind", "step"],
    buckets=(0.01, 0.05, 0.1, 0.25, 0.5, 1, 2.5, 5, 10, 30, 60, 300),
)

ORPHANS = Gauge(
    "lunbridge_orphans",
    "LUNs, maps and RDMs with lunbridge's naming that no lunbridge object owns, at the last sweep",
    ["kind", "backend"],
)
SWEEPS = Counter("lunbridge_orphan_sweeps_total", "Orphan sweeps run, by result", ["result"])


@contextmanager
def measured(kind: str, step: str) -> Iterator[None]:
    started = time.monotonic()
    try:
        yield
    except Exception as exc:
        ERRORS.labels(kind, step, type(exc).__name__).inc()
        raise
    finally:
        STEPS.labels(kind, step).inc()
        DURATION.labels(kind, step).observe(time.monotonic() - started)


def serve(port: int) -> None:
    if port:
        start_http_server(port)
