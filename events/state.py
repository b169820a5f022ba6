"""The fleet-state projection's data: tasks, the queue by priority, agents, breakers, costs.

These Structs are mutable on purpose: `events.projection.apply` updates them in place, which
keeps replay of a long log fast. They compare by value, encode to msgpack (snapshots) and copy
with `FleetState.copy()`.
"""

from __future__ import annotations

import contextlib
import gc
import hashlib
from collections.abc import Callable, Iterator
from typing import Any

import msgspec

from events.approvals import ApprovalRule, ApprovalState
from events.packed_map import PackedMap
from events.redact import redact_value
from events.transitions import EVICTED_STATES, TERMINAL_STATES
from events.types import TaskDefinition

__all__ = [
    "EVICTED_STATES",
    "PRIORITIES",
    "AgentState",
    "AttemptRecord",
    "BreakerState",
    "Denial",
    "FleetState",
    "NodeState",
    "PackedMap",
    "TaskState",
    "dec_hook",
    "enc_hook",
    "paused_gc",
    "schema_hook",
    "to_builtins",
]

PRIORITIES = (1, 2, 3, 4, 5)


class Denial(msgspec.Struct, kw_only=True, frozen=True, gc=False):
    """A tool call Claude Code refused (a `task.permission_denied` event)."""

    attempt: int
    tool: str
    summary: str = ""
    at: float = 0.0


class AttemptRecord(msgspec.Struct, kw_only=True, gc=False):
    """One attempt of a task: who ran it, how it ended, what it cost."""

    attempt: int
    agent_id: str | None = None
    epoch: int | None = None
    node_id: str | None = None
    assigned_at: float | None = None
    started_at: float | None = None
    finished_at: float | None = None
    outcome: str = "assigned"  # assigned|running|completed|failed|cancelled
    failure: str | None = None
    reason: str | None = None
    exit_code: int | None = None
    pid: int | None = None
    session_id: str | None = None
    input_tokens: int = 0
    output_tokens: int = 0
    cost_usd: float = 0.0


class TaskState(msgspec.Struct, kw_only=True, gc=False):
    """A task as the log says it is now. Like its definition, it holds tuples (replaced, not
    appended to: they change a few times in a task's life) and is not tracked by the cyclic
    garbage collector, so that a long queue costs the collector nothing."""

    task_id: str
    state: str
    definition: TaskDefinition
    attempt: int = 0
    agent_id: str | None = None
    epoch: int | None = None
    node_id: str | None = None
    pid: int | None = None
    create_time: float | None = None
    log_path: str | None = None
    session_id: str | None = None
    workspace: str | None = None
    branch: str | None = None
    not_before: float | None = None
    cost_usd: float = 0.0
    input_tokens: int = 0
    output_tokens: int = 0
    last_failure: str | None = None
    last_reason: str | None = None
    progress: str | None = None
    result: str | None = None
    exit_code: int | None = None
    submitted_at: float = 0.0
    finished_at: float | None = None
    queued_seq: int = 0
    history: tuple[AttemptRecord, ...] = ()
    follow_up: str | None = None  # `forge task continue`: the prompt of the next attempts
    merged_into: str | None = None  # `forge task merge`: the branch its work landed on
    merge_commit: str | None = None  # ... and that branch's new head
    discarded: bool = False  # `forge task discard`: its worktree and branch were removed
    pending_approvals: tuple[str, ...] = ()  # ids of tool calls waiting for `forge approve|deny`
    approval_rules: tuple[ApprovalRule, ...] = ()  # what `forge approve --always` allowed
    denials: tuple[Denial, ...] = ()  # tool calls Claude Code refused, oldest first

    @property
    def terminal(self) -> bool:
        return self.state in TERMINAL_STATES

    @property
    def current(self) -> AttemptRecord | None:
        """The record of the latest attempt, if any."""
        return self.history[-1] if self.history else None


class AgentState(msgspec.Struct, kw_only=True, gc=False):
    """An agent: spawned, ready, idle, busy, paused, unhealthy, crashed or terminated."""

    agent_id: str
    status: str = "spawned"
    runtime: str = "shell"
    tags: list[str] = []
    node_id: str = ""
    task_id: str | None = None
    attempt: int | None = None
    reason: str | None = None
    spawned_at: float = 0.0
    updated_at: float = 0.0


class BreakerState(msgspec.Struct, kw_only=True, gc=False):
    """A circuit breaker: closed, open (until a wall-clock time) or half_open."""

    name: str
    state: str = "closed"
    until: float | None = None
    failures: int = 0
    reason: str | None = None
    changed_at: float = 0.0


class NodeState(msgspec.Struct, kw_only=True, gc=False):
    """A node (one daemon's machine) of the namespace: its current epoch, whether its daemon
    runs, and its lease (held until the node stops or is recorded lost)."""

    node_id: str
    epoch: int
    expires_at: float = 0.0  # when the lease taken at start expires unless renewed
    held: bool = False
    running: bool = False
    lost: bool = False  # the last epoch ended by a lease that ran out, not by a stop
    pid: int | None = None
    started_at: float = 0.0


def _empty_queues() -> dict[int, dict[str, None]]:
    return {p: {} for p in PRIORITIES}


class FleetState(msgspec.Struct, kw_only=True):
    """Everything the log says about the fleet, as of `position` (the last stream id applied)."""

    tasks: dict[str, TaskState] = {}  # the hot state: every task not in `finished`
    # evicted task id -> "state|attempt|epoch" (as the index), packed (events.packed_map)
    finished: PackedMap = msgspec.field(default_factory=PackedMap)
    finished_counts: dict[str, int] = {}  # final state -> how many tasks in `finished`
    queues: dict[int, dict[str, None]] = msgspec.field(default_factory=_empty_queues)
    queue_seq: int = 0
    idempotency: PackedMap = msgspec.field(default_factory=PackedMap)  # key -> task id
    dependants: dict[str, list[str]] = {}  # task id -> ids of tasks waiting on it
    agents: dict[str, AgentState] = {}
    breakers: dict[str, BreakerState] = {}
    nodes: dict[str, NodeState] = {}
    total_cost_usd: float = 0.0
    budget_exhausted: bool = False
    budget_spent_usd: float | None = None
    budget_limit_usd: float | None = None
    daemon_node: str | None = None
    daemon_epoch: int = 0
    daemon_pid: int | None = None
    daemon_running: bool = False
    stop_requested: bool = False
    stop_requests: dict[str, float] = {}  # node id ("*": every node) -> when a stop was last asked
    cancel_requests: dict[str, float] = {}  # task id -> when requested, until it ends
    retry_requests: dict[str, float] = {}  # task id -> when requested, until it is queued
    agent_requests: int = 0
    approvals: dict[str, ApprovalState] = {}  # approval id -> request and answer
    position: str = "0-0"
    event_count: int = 0
    anomalies: int = 0
    anomaly_kinds: dict[str, int] = {}  # event tag -> how many were ignored as illegal
    last_at: float = 0.0

    # -- queue view ---------------------------------------------------------------------

    def queued(self) -> Iterator[str]:
        """Queued task ids in dispatch order: priority 1 first, FIFO within a priority."""
        for p in PRIORITIES:
            yield from self.queues[p]

    def next_queued(self, predicate: Callable[[TaskState], bool] | None = None) -> str | None:
        """The first queued task id (in dispatch order) whose task satisfies `predicate`."""
        for p in PRIORITIES:
            for task_id in self.queues[p]:
                if predicate is None or predicate(self.tasks[task_id]):
                    return task_id
        return None

    def queue_length(self) -> int:
        return sum(len(q) for q in self.queues.values())

    # -- dependencies -------------------------------------------------------------------

    def task_state(self, task_id: str) -> str | None:
        """The state of a task, hot or finished; None for an unknown task."""
        task = self.tasks.get(task_id)
        if task is not None:
            return task.state
        done = self.finished.get(task_id)
        return None if done is None else done.partition("|")[0]

    def unmet_dependencies(self, task_id: str) -> list[str]:
        """The dependencies of `task_id` that have not completed (unknown ones included)."""
        task = self.tasks[task_id]
        return [d for d in task.definition.after if self.task_state(d) != "completed"]

    def ready_dependants(self, task_id: str) -> list[str]:
        """Pending tasks waiting on `task_id` whose dependencies have now all completed."""
        return [
            t
            for t in self.dependants.get(task_id, ())
            if self.tasks[t].state == "pending" and not self.unmet_dependencies(t)
        ]

    # -- comparison and copies ----------------------------------------------------------

    def copy(self) -> FleetState:
        """A deep copy."""
        return _STATE_DECODER.decode(_ENCODER.encode(self))

    def same_as(self, other: FleetState) -> bool:
        """Equal including every ordering (queue FIFO, insertion order of each map)."""
        return _ENCODER.encode(self) == _ENCODER.encode(other)

    def hot_digest(self) -> str:
        """A digest of everything but the finished-task map (equal for equal states, orderings
        included): O(live work), not O(history)."""
        hot = msgspec.structs.replace(self, finished=PackedMap())
        return hashlib.sha256(_ENCODER.encode(hot)).hexdigest()

    def counts(self) -> dict[str, int]:
        """How many tasks are in each state."""
        out: dict[str, int] = dict(self.finished_counts)
        for task in self.tasks.values():
            out[task.state] = out.get(task.state, 0) + 1
        return out


def enc_hook(obj: Any) -> Any:
    """How msgspec encodes what it cannot by itself: the packed maps."""
    if isinstance(obj, PackedMap):
        return obj.packed()
    raise NotImplementedError(f"cannot encode {type(obj).__name__}")


def dec_hook(kind: type, obj: Any) -> Any:
    """How msgspec decodes what it cannot by itself (see `enc_hook`)."""
    if kind is PackedMap:
        return PackedMap.unpack(obj)
    raise NotImplementedError(f"cannot decode {kind.__name__}")


def schema_hook(kind: type) -> dict[str, Any]:
    """The JSON schema of what msgspec cannot describe by itself (see `enc_hook`)."""
    if kind is PackedMap:
        return {"title": "PackedMap", "type": "array", "description": "packed, 4096 buckets"}
    raise NotImplementedError(f"no schema for {kind.__name__}")


_ENCODER = msgspec.msgpack.Encoder(enc_hook=enc_hook)
_STATE_DECODER = msgspec.msgpack.Decoder(FleetState, dec_hook=dec_hook)


def _builtin_hook(obj: Any) -> Any:
    if isinstance(obj, PackedMap):
        return dict(obj.items())  # (readable: `forge events replay --json`)
    raise NotImplementedError(f"cannot encode {type(obj).__name__}")


def to_builtins(obj: Any) -> Any:
    """JSON-ready builtins of any state or event, with secrets (e.g. in task env) redacted."""
    return redact_value(msgspec.to_builtins(obj, str_keys=True, enc_hook=_builtin_hook))


@contextlib.contextmanager
def paused_gc() -> Iterator[None]:
    """Pause the cyclic garbage collector while building a large state (a replay or a snapshot
    decode allocates many long-lived objects and no cycles; collecting meanwhile triples the
    time). Restores the collector's previous setting."""
    was_enabled = gc.isenabled()
    gc.disable()
    try:
        yield
    finally:
        if was_enabled:
            gc.enable()
