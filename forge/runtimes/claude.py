"""The Claude Code runtime: one `claude -p` process per attempt, read as stream-json.

Each attempt runs under the shim of `forge.runtimes.process` (detached, output to the attempt's
log, stopped after the task's timeout), with the command line and environment of
`forge.runtimes.claude_command`. Its output is parsed line by line by
`forge.runtimes.claude_stream.StreamParser` into session, progress and usage notices, and the
attempt's end is classified from the `result` line, the exit status and what Forge asked for
(a cancel or a timeout wins over what the agent printed).

A task submitted with `--sandbox` or limits runs in bubblewrap and under its cgroup
(`forge.runtimes.isolation`); a sandboxed attempt gets no approval server (it needs the daemon's
log, which the sandbox hides), so the calls its rules leave open are refused, not asked.

Secrets: the agent's credential variables are registered with `events.redact` and masked by the
shim before its output reaches the log; every notice and outcome is redacted again on the way
out; the command line is only ever shown through `display_argv`.
"""

from __future__ import annotations

from collections.abc import Callable, Iterable, Mapping, Sequence
from pathlib import Path
from typing import TYPE_CHECKING

import msgspec

from actors.runtime import FailureClass, Notice, Outcome, RunHandle, TaskSpec
from events.redact import register_secrets
from forge.approvals.launch import ApprovalServer
from forge.errors import NotFound
from forge.log import get_logger
from forge.runtimes.claude_command import (
    ClaudeNotFound,
    agent_environment,
    build_argv,
    display_argv,
    find_claude_binary,
    secret_names,
    session_for,
)
from forge.runtimes.claude_stream import ProgressThrottle, StreamParser
from forge.runtimes.claude_usage import UsageThrottle
from forge.runtimes.completed import CompletedRun
from forge.runtimes.isolation import daemon_paths, isolate, limited, reattach, watch
from forge.runtimes.logfile import ExitStatus, iter_log_lines
from forge.runtimes.process import ProcessRun, default_outcome, secret_env_names
from forge.runtimes.tracking import ShimRuntime

if TYPE_CHECKING:
    from forge.settings import Settings

__all__ = ["ClaudeRuntime"]

_log = get_logger(__name__)

_NEVER_ASKS = frozenset({"bypassPermissions", "dontAsk"})  # modes with no approval server


class ClaudeRuntime(ShimRuntime):
    """Runs `spec.prompt` with Claude Code in `spec.cwd` (a `RuntimeAdapter` named "claude").

    `binary` is `runtime.claude_binary` from the settings (None: `claude` on PATH, then the
    claude-agent-sdk wheel's bundled binary); `default_model` is used when a task names none;
    `environ` is the daemon's environment (`forge.settings.environment()` when not given), from
    which the agent receives its authentication and Claude Code tuning variables only.
    """

    name = "claude"

    def __init__(
        self,
        binary: str | None = None,
        *,
        default_model: str | None = None,
        environ: Mapping[str, str] | None = None,
        progress_interval: float = 1.0,
        kill_grace: float = 5.0,
        approvals: ApprovalServer | None = None,
        usage_interval: float = 2.0,
        hidden: Sequence[str] = (),
    ) -> None:
        super().__init__()
        self.hidden = list(hidden)  # what the sandbox of a sandboxed task hides (FORGE_HOME)
        if environ is None:
            from forge.settings import environment

            environ = environment()
        self.binary = binary
        self.default_model = default_model
        self.progress_interval = progress_interval
        self.usage_interval = usage_interval  # seconds between live usage notices
        self.kill_grace = kill_grace
        self.approvals = approvals  # None: calls the rules leave open are refused, not asked
        self._environ = dict(environ)
        self._resolved: str | None = None

    @classmethod
    def from_settings(
        cls, settings: Settings, environ: Mapping[str, str] | None = None
    ) -> ClaudeRuntime:
        """The runtime configured by `runtime.claude_binary` and `runtime.default_model`, its
        attempts asking `forge approve|deny` through the log of `settings`."""
        runtime = settings.runtime
        return cls(
            runtime.claude_binary,
            default_model=runtime.default_model,
            environ=environ,
            approvals=ApprovalServer.from_settings(settings),
            hidden=daemon_paths(settings.home, settings.redis.url),
        )

    def resolve_binary(self, search_path: str | None = None) -> str:
        """The executable to run (found once); raises `ClaudeNotFound`."""
        if self._resolved is None:
            path = search_path if search_path is not None else self._environ.get("PATH")
            self._resolved = find_claude_binary(self.binary, path)
        return self._resolved

    def execute(self, spec: TaskSpec, sink: Callable[[Notice], None]) -> RunHandle:
        if not spec.prompt:
            reason = "the claude runtime needs a prompt"
            return CompletedRun(Outcome(ok=False, failure="invalid", reason=reason))
        session_id, resume = session_for(spec)
        spec = msgspec.structs.replace(spec, session_id=session_id, resume=resume)
        try:
            binary = self.resolve_binary(spec.env.get("PATH"))
        except ClaudeNotFound as e:
            return CompletedRun(Outcome(ok=False, failure="spawn", reason=str(e)))
        try:
            approval_config = self._approval_config(spec)
        except OSError as e:
            reason = f"cannot write the approval server's config: {e}"
            return CompletedRun(Outcome(ok=False, failure="spawn", reason=reason))
        argv = build_argv(binary, spec, self.default_model, approval_config)
        env = agent_environment(spec.env, self._environ, spec.cwd)
        if approval_config is not None and self.approvals is not None:
            env["MCP_TOOL_TIMEOUT"] = self.approvals.tool_timeout_ms()
        secrets = sorted({*secret_names(env), *secret_env_names(env)})
        register_secrets(env[name] for name in secrets)
        handler, builder = self._hooks(session_id, sink)
        _log.info(
            "claude.start",
            task_id=spec.task_id,
            attempt=spec.attempt,
            session_id=session_id,
            resume=resume,
            argv=display_argv(argv),
        )
        limiter = None
        try:
            isolated = isolate(spec, argv, env, self.hidden)
            limiter = isolated.limiter
            run = ProcessRun.start(
                isolated.argv,
                log_path=spec.log_path,
                sink=sink,
                env=env,
                cwd=spec.cwd,
                timeout=spec.timeout,
                grace=self.kill_grace,
                mask_env=secrets,
                line_handler=handler,
                outcome_builder=limited(limiter, builder),
            )
        except OSError as e:  # the shim, sandbox or cgroup could not start; an unwritable log
            if limiter is not None:
                limiter.remove()
            return CompletedRun(
                Outcome(
                    ok=False, failure="spawn", reason=f"cannot start: {e}", session_id=session_id
                )
            )
        watch(run, limiter)
        self._track(run)
        return run

    def _approval_config(self, spec: TaskSpec) -> str | None:
        """The `--mcp-config` file of this attempt's approval server (written beside its log),
        or None when nothing is to be asked: no approvals configured, or a mode that asks nobody
        (bypassPermissions allows every call, dontAsk refuses what the rules leave open)."""
        if self.approvals is None or spec.permission_mode in _NEVER_ASKS or spec.sandbox:
            return None  # a sandbox hides the log the approval server needs: refused, not asked
        path = Path(spec.log_path).with_suffix(".mcp.json")
        return self.approvals.write_config(path, spec.task_id, spec.attempt, spec.approval_rules)

    def adopt(
        self, spec: TaskSpec, pid: int, create_time: float, sink: Callable[[Notice], None]
    ) -> RunHandle | None:
        """Follow an attempt again; its log is parsed from the start, so notices repeat.

        An attempt whose shim is gone without a status is reported `lost` with what its log
        says it spent (the daemon may have died before recording it)."""
        handler, builder = self._hooks(spec.session_id, sink)
        limiter = reattach(spec)
        run = ProcessRun.adopt(
            pid,
            create_time,
            spec.log_path,
            sink,
            line_handler=handler,
            outcome_builder=limited(limiter, builder),
        )
        if run is None:
            if limiter is not None:
                limiter.remove()  # gone: nothing of it may run beside a retry
            return self._lost(spec)
        watch(run, limiter)
        self._track(run)
        return run

    def _lost(self, spec: TaskSpec) -> RunHandle | None:
        parser = StreamParser(spec.session_id)
        try:
            for line in iter_log_lines(spec.log_path, redacted=False):
                parser.feed(line)
        except (NotFound, OSError):
            return None
        seen = parser.finish(None)
        if not (seen.cost_usd or seen.input_tokens or seen.output_tokens):
            return None
        reason = "the agent process was gone when the daemon restarted"
        return CompletedRun(
            Outcome(
                ok=False,
                failure="lost",
                reason=reason,
                session_id=seen.session_id,
                cost_usd=seen.cost_usd,
                input_tokens=seen.input_tokens,
                output_tokens=seen.output_tokens,
            )
        )

    def _hooks(
        self, session_id: str | None, sink: Callable[[Notice], None]
    ) -> tuple[
        Callable[[str], Iterable[Notice]],
        Callable[[ExitStatus | None, FailureClass | None], Outcome],
    ]:
        parser = StreamParser(
            session_id,
            ProgressThrottle(self.progress_interval),
            usage_throttle=UsageThrottle(self.usage_interval),
        )

        def build(status: ExitStatus | None, requested: FailureClass | None) -> Outcome:
            for notice in parser.flush():  # the last progress summary, before the outcome
                sink(notice)
            return claude_outcome(parser, status, requested)

        return parser.feed, build


def claude_outcome(
    parser: StreamParser, status: ExitStatus | None, requested: FailureClass | None
) -> Outcome:
    """How an attempt ended: Forge's own stop or a spawn failure first, then the agent's word.

    The session, cost and tokens seen in the output are kept whatever the verdict.
    """
    if status is None or status.spawn_error is not None or requested is not None:
        outcome = default_outcome(status, requested)
    elif status.timed_out:
        outcome = default_outcome(status, None)
    else:
        return parser.finish(status.exit_code, status.signal)
    seen = parser.finish(
        None if status is None else status.exit_code, None if status is None else status.signal
    )
    return msgspec.structs.replace(
        outcome,
        session_id=seen.session_id,
        cost_usd=seen.cost_usd,
        input_tokens=seen.input_tokens,
        output_tokens=seen.output_tokens,
    )
