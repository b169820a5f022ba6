"""The runtime adapter protocol: how an AgentSupervisor runs work without knowing what runs it.

Runtimes (the shell runtime, the Claude Code runtime, a no-op runtime for benchmarks) live in
`forge.runtimes` and implement `RuntimeAdapter`; the actors only see this module. A runtime
starts one process per attempt, detached from the daemon (its own session, output written to the
attempt's log file), so that a restarted daemon can re-adopt an attempt that is still running.

What a runtime reports while an attempt runs is a stream of `Notice`s handed to a sink callback,
from the runtime's own reader thread; the supervisor turns them into events. When the attempt
ends, `RunHandle.wait()` returns an `Outcome` that classifies the failure, so the orchestrator
can decide between retrying, waiting for a circuit breaker, and failing for good.
"""

from __future__ import annotations

from collections.abc import Callable, Iterator
from typing import Literal, Protocol, runtime_checkable

import msgspec

from events.approvals import ApprovalRule
from events.event_base import Limits

__all__ = [
    "FailureClass",
    "Health",
    "Notice",
    "Outcome",
    "OutputLine",
    "PermissionDenial",
    "ProgressNotice",
    "ResourceUsage",
    "RunHandle",
    "RuntimeAdapter",
    "SessionNotice",
    "TaskSpec",
    "UsageNotice",
    "Workspaces",
    "is_transient",
]

FailureClass = Literal[
    "exit",  # the command exited non-zero on its own: permanent unless the task says otherwise
    "crash",  # killed by a signal it did not ask for (OOM, kill -9): transient
    "timeout",  # ran past the task's timeout and was stopped: transient
    "unhealthy",  # stopped by the supervisor (stuck, over its memory limit): transient
    "lost",  # the daemon died and the agent process was gone on restart: transient
    "cancelled",  # stopped because the task was cancelled: final, never retried
    "api_error",  # model API 429/529/5xx, connection error: transient, counts for the breaker
    "rate_limited",  # usage or rate limit with a known reset time: opens the breaker until then
    "auth",  # authentication failed: permanent
    "invalid",  # the task or its input is invalid: permanent
    "max_turns",  # the agent hit its turn limit: permanent (recorded as such)
    "max_budget",  # the agent hit its USD budget: permanent (recorded as such)
    "spawn",  # the process could not be started (missing binary, bad cwd): permanent
    "permission_denied",  # claude: a tool call was refused, the work is not done: permanent
    "oom",  # the kernel killed it over its memory limit (--memory): permanent, the limit stands
]

_TRANSIENT: frozenset[str] = frozenset(
    {"crash", "timeout", "unhealthy", "lost", "api_error", "rate_limited"}
)


def is_transient(failure: FailureClass | None) -> bool:
    """Whether a failure of this class is worth another attempt."""
    return failure in _TRANSIENT


class TaskSpec(msgspec.Struct, frozen=True, kw_only=True):
    """Everything a runtime needs to run one attempt of one task."""

    task_id: str
    attempt: int
    log_path: str  # the attempt's output goes here (and to the sink)
    command: list[str] | None = None  # shell runtime: the argv to run (no shell)
    prompt: str | None = None  # claude runtime: the prompt
    cwd: str | None = None
    env: dict[str, str] = msgspec.field(default_factory=dict)  # already filtered by allow-list
    timeout: float | None = None  # seconds; the runtime stops the attempt after it
    model: str | None = None
    max_turns: int | None = None
    budget_usd: float | None = None
    allowed_tools: list[str] = msgspec.field(default_factory=list)
    disallowed_tools: list[str] = msgspec.field(default_factory=list)
    permission_mode: str | None = None
    add_dirs: list[str] = msgspec.field(default_factory=list)  # more directories tools may use
    append_system_prompt: str | None = None
    mcp_config: str | None = None
    # claude: tool calls `forge approve --always` allowed for the rest of the task
    approval_rules: list[ApprovalRule] = msgspec.field(default_factory=list)
    session_id: str | None = None  # claude: the session id Forge chose for this task
    resume: bool = False  # claude: continue `session_id` with --resume
    repo: str | None = None  # run in this task's own git worktree of this repository
    # when the task was submitted: an attempt's files older than that belong to someone else
    submitted_at: float | None = None
    # isolation, as recorded at submit: the kernel-enforced limits of the attempt, its network
    # ("on", "off", "api"; None: "on") and the image of the container runtime
    limits: Limits | None = None
    network: str | None = None
    image: str | None = None
    sandbox: bool = False  # process runtimes: run the command in bubblewrap (runtimes.sandbox)


@runtime_checkable
class Workspaces(Protocol):
    """Where tasks that name a repository run: one git worktree and branch per task."""

    def prepare(self, task_id: str, repo: str) -> tuple[str, str]:
        """The task's worktree path and branch, created on first use, found again later."""
        ...

    def release(self, task_id: str, repo: str, *, succeeded: bool, attempt: int = 0) -> None:
        """The task is over: remove its worktree if the retention policy says so (a branch
        with commits is kept). After a successful `attempt`, what it left uncommitted is
        committed on the task's branch first."""
        ...


class OutputLine(msgspec.Struct, frozen=True, kw_only=True, tag="output"):
    """A raw line the agent printed (already redacted by the runtime)."""

    stream: Literal["stdout", "stderr"]
    text: str


class SessionNotice(msgspec.Struct, frozen=True, kw_only=True, tag="session"):
    """The agent's conversation started (Claude Code's system/init line)."""

    session_id: str
    model: str | None = None
    tools: list[str] = msgspec.field(default_factory=list)


class ProgressNotice(msgspec.Struct, frozen=True, kw_only=True, tag="progress"):
    """A short summary of what the agent is doing (rate-limited by the runtime)."""

    summary: str


class UsageNotice(msgspec.Struct, frozen=True, kw_only=True, tag="usage"):
    """Tokens and cost the attempt has used so far (cumulative)."""

    input_tokens: int = 0
    output_tokens: int = 0
    cost_usd: float = 0.0


Notice = OutputLine | SessionNotice | ProgressNotice | UsageNotice


class PermissionDenial(msgspec.Struct, frozen=True, kw_only=True):
    """A tool call the agent was refused (Claude Code's `permission_denials` entry): the tool,
    its call id, and a short redacted summary of its input (never a file's content)."""

    tool: str
    tool_use_id: str = ""
    summary: str = ""


class Outcome(msgspec.Struct, frozen=True, kw_only=True):
    """How an attempt ended."""

    ok: bool
    exit_code: int | None = None
    signal: int | None = None
    failure: FailureClass | None = None  # None when ok
    reason: str = ""  # one line a person can read; secrets redacted
    reset_at: float | None = None  # rate_limited: wall-clock time when the limit resets
    session_id: str | None = None
    cost_usd: float = 0.0
    input_tokens: int = 0
    output_tokens: int = 0
    result: str | None = None  # the agent's final answer, if it gave one
    denials: list[PermissionDenial] = msgspec.field(default_factory=list)  # refused tool calls


class Health(msgspec.Struct, frozen=True, kw_only=True):
    """A health probe of a running attempt (PID and start time checked, never the PID alone)."""

    alive: bool
    rss_bytes: int = 0
    cpu_percent: float = 0.0
    seconds_since_output: float = 0.0


class ResourceUsage(msgspec.Struct, frozen=True, kw_only=True):
    """Resources of the attempt's whole process tree."""

    rss_bytes: int = 0
    cpu_seconds: float = 0.0
    processes: int = 0


@runtime_checkable
class RunHandle(Protocol):
    """One running attempt."""

    @property
    def pid(self) -> int: ...

    @property
    def create_time(self) -> float: ...

    def wait(self, timeout: float | None = None) -> Outcome | None:
        """The outcome once the attempt has ended; None if `timeout` passed first."""
        ...

    def health(self) -> Health: ...

    def resource_usage(self) -> ResourceUsage: ...

    def pause(self) -> None:
        """Stop the whole process tree (SIGSTOP)."""
        ...

    def resume(self) -> None:
        """Continue the whole process tree (SIGCONT)."""
        ...

    def terminate(self, grace: float = 5.0, failure: FailureClass = "cancelled") -> None:
        """SIGTERM the process tree, SIGKILL it after `grace` seconds; the outcome says why."""
        ...


@runtime_checkable
class RuntimeAdapter(Protocol):
    """A way of running agents' work: the shell, Claude Code, or anything else."""

    name: str

    def execute(self, spec: TaskSpec, sink: Callable[[Notice], None]) -> RunHandle:
        """Start one attempt and return at once; notices flow to `sink` from another thread."""
        ...

    def adopt(
        self, spec: TaskSpec, pid: int, create_time: float, sink: Callable[[Notice], None]
    ) -> RunHandle | None:
        """Re-attach to an attempt started by an earlier daemon; None if it is gone."""
        ...

    def locate(self, spec: TaskSpec) -> tuple[int, float] | None:
        """(pid, create time) of a live attempt of `spec` whose start was never recorded
        (the daemon died in between), so that it is adopted rather than run twice."""
        ...

    def logs(self, log_path: str, follow: bool = False) -> Iterator[str]:
        """The lines of an attempt's log file (following it while it grows if asked)."""
        ...

    def cleanup(self) -> None:
        """Release whatever the runtime holds (threads, temporary files)."""
        ...
