"""In-memory fakes of the three things lunbridge talks to (a storage server, a hypervisor, the
Kubernetes API server) and an operator that runs the real kopf handlers against them.

They exist so that the reconcile steps and the CSI controller are tested in milliseconds on
the same objects: what the real operator writes into the fake API server is exactly what the
CSI controller reads back, with no status built by hand. Each fake keeps the semantics its
protocol's docstrings promise, logs every call and can be told to fail the next one.
`Lab` wires them together.
"""

from tests.fakes.faults import Call, Faults
from tests.fakes.hypervisor import FakeHypervisor
from tests.fakes.kube import FakeKube
from tests.fakes.lab import Lab
from tests.fakes.operator import Event, Failure, FakeOperator, OperatorCrashed
from tests.fakes.storage import FakeStorage

__all__ = [
    "Call",
    "Event",
    "Failure",
    "FakeHypervisor",
    "FakeKube",
    "FakeOperator",
    "FakeStorage",
    "Faults",
    "Lab",
    "OperatorCrashed",
]
