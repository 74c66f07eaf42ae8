"""The node channel's two halves, typed: a `NodeTask` the operator writes into an object's
status for one node plugin, and the `NodeReport` that node plugin writes back beside it.

This is the one way the node plugin learns of work for its node and answers (the CSI node RPCs
cannot: the kubelet drives them, and only for volumes it publishes). The operator labels the
object `lunbridge.io/node-task=<node_task_label(node)>`; the node plugin watches the objects
of the kinds it serves that carry its own label value, runs a task whose `id` its report does
not yet answer as `Done`, and merge-patches `status.nodeReport`. Each side writes only its own
key, so neither overwrites the other. A task is idempotent on the node (a node plugin restarted
mid-task runs it again); a new `id` asks for a new run.
"""

from __future__ import annotations

import enum
import hashlib
import re

from pydantic import Field

from lunbridge.models._base import Model

LABEL_VALUE = re.compile(r"^[A-Za-z0-9]([-A-Za-z0-9_.]{0,61}[A-Za-z0-9])?$")


def node_task_label(node: str) -> str:
    """The NODE_TASK_LABEL value for `node`: its name when that is a valid label value (at most
    63 characters), else `h-` and a hash of it (Node names may be up to 253 characters)."""
    if LABEL_VALUE.match(node):
        return node
    return "h-" + hashlib.sha256(node.encode()).hexdigest()[:40]


class TaskState(enum.StrEnum):
    RUNNING = "Running"
    DONE = "Done"


class NodeTask(Model):
    """Work for the node plugin of `node`: `type` names the worker, `params` its input (strings,
    as a publish context), `timeout_seconds` how long the node may take."""

    id: str
    node: str
    type: str
    params: dict[str, str] = Field(default_factory=dict)
    timeout_seconds: int = 600
    issued_at: str | None = None


class NodeReport(Model):
    """The node plugin's answer to task `id`: `Running` while it works, then `Done` with the
    worker's `result` (its own keys), or `error` when the node could not do the work at all."""

    id: str
    node: str
    state: TaskState
    started_at: str | None = None
    finished_at: str | None = None
    result: dict[str, str] = Field(default_factory=dict)  # strings, as params
    error: str | None = None

    def answers(self, task: NodeTask | None) -> bool:
        """This report is the final answer to `task`."""
        return task is not None and self.id == task.id and self.state is TaskState.DONE
