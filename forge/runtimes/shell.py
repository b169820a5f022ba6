"""The shell runtime: an agent's task is any command, an argv exec'd as given (a command
submitted as one string was stored as `/bin/sh -c STRING`)."""

from __future__ import annotations

from collections.abc import Callable, Sequence
from typing import TYPE_CHECKING

from actors.runtime import FailureClass, Notice, Outcome, RunHandle, TaskSpec
from forge.runtimes.completed import CompletedRun
from forge.runtimes.isolation import daemon_paths, isolate, limited, reattach, watch
from forge.runtimes.process import ProcessRun, secret_env_names
from forge.runtimes.tracking import ShimRuntime

if TYPE_CHECKING:
    from forge.settings import Settings

__all__ = ["ShellRuntime"]


class ShellRuntime(ShimRuntime):
    """Run `spec.command` in `spec.cwd` with exactly `spec.env`, stopped after `spec.timeout`.

    Output (stdout and stderr merged) goes to `spec.log_path`, with the values of secret
    variables of `spec.env` masked before they reach the disk, and, line by line and redacted,
    to the sink as `OutputLine`s. A task that asks for it runs in the sandbox and under its
    limits (`forge.runtimes.isolation`); `hidden` are the directories the sandbox hides (the
    daemon's FORGE_HOME).
    """

    name = "shell"

    def __init__(self, *, kill_grace: float = 5.0, hidden: Sequence[str] = ()) -> None:
        """`kill_grace`: seconds between SIGTERM and SIGKILL when an attempt times out."""
        super().__init__()
        self.kill_grace = kill_grace
        self.hidden = list(hidden)

    @classmethod
    def from_settings(cls, settings: Settings) -> ShellRuntime:
        """A shell runtime whose sandboxed tasks cannot see the daemon's home."""
        return cls(hidden=daemon_paths(settings.home, settings.redis.url))

    def execute(self, spec: TaskSpec, sink: Callable[[Notice], None]) -> RunHandle:
        if not spec.command:
            return CompletedRun(
                Outcome(ok=False, failure="invalid", reason="the shell runtime needs a command")
            )
        limiter = None
        try:
            isolated = isolate(spec, spec.command, spec.env, self.hidden)
            limiter = isolated.limiter
            run = ProcessRun.start(
                isolated.argv,
                log_path=spec.log_path,
                sink=sink,
                env=spec.env,
                cwd=spec.cwd,
                timeout=spec.timeout,
                grace=self.kill_grace,
                mask_env=secret_env_names(spec.env),
                outcome_builder=limited(limiter),
            )
        except (OSError, ValueError) as e:
            if limiter is not None:
                limiter.remove()
            # OSError: the shim, the sandbox or the cgroup could not be set up, or the log is
            # not writable; ValueError: a NUL byte in an argument, from a log older than checks
            failure: FailureClass = "spawn" if isinstance(e, OSError) else "invalid"
            return CompletedRun(Outcome(ok=False, failure=failure, reason=f"cannot start: {e}"))
        watch(run, limiter)
        self._track(run)
        return run

    def adopt(
        self, spec: TaskSpec, pid: int, create_time: float, sink: Callable[[Notice], None]
    ) -> RunHandle | None:
        """Follow the shim `pid` again (its log is replayed from the start: expect repeats)."""
        limiter = reattach(spec)
        run = ProcessRun.adopt(
            pid, create_time, spec.log_path, sink, outcome_builder=limited(limiter)
        )
        if run is not None:
            watch(run, limiter)
            self._track(run)
        elif limiter is not None:
            limiter.remove()  # gone: nothing of it may run beside a retry
        return run
