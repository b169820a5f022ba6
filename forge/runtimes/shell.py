"""The shell runtime: an agent's task is any command, an argv exec'd as given (a command
submitted as one string was stored as `/bin/sh -c STRING`)."""

from __future__ import annotations

from collections.abc import Callable

from actors.runtime import Notice, Outcome, RunHandle, TaskSpec
from forge.runtimes.completed import CompletedRun
from forge.runtimes.process import ProcessRun, secret_env_names
from forge.runtimes.tracking import ShimRuntime

__all__ = ["ShellRuntime"]


class ShellRuntime(ShimRuntime):
    """Run `spec.command` in `spec.cwd` with exactly `spec.env`, stopped after `spec.timeout`.

    Output (stdout and stderr merged) goes to `spec.log_path`, with the values of secret
    variables of `spec.env` masked before they reach the disk, and, line by line and redacted,
    to the sink as `OutputLine`s.
    """

    name = "shell"

    def __init__(self, *, kill_grace: float = 5.0) -> None:
        """`kill_grace`: seconds between SIGTERM and SIGKILL when an attempt times out."""
        super().__init__()
        self.kill_grace = kill_grace

    def execute(self, spec: TaskSpec, sink: Callable[[Notice], None]) -> RunHandle:
        if not spec.command:
            return CompletedRun(
                Outcome(ok=False, failure="invalid", reason="the shell runtime needs a command")
            )
        try:
            run = ProcessRun.start(
                spec.command,
                log_path=spec.log_path,
                sink=sink,
                env=spec.env,
                cwd=spec.cwd,
                timeout=spec.timeout,
                grace=self.kill_grace,
                mask_env=secret_env_names(spec.env),
            )
        except OSError as e:  # the shim itself could not start, or the log is not writable
            return CompletedRun(Outcome(ok=False, failure="spawn", reason=f"cannot start: {e}"))
        except ValueError as e:  # a NUL byte in an argument, from a log older than validation
            return CompletedRun(Outcome(ok=False, failure="invalid", reason=f"cannot start: {e}"))
        self._track(run)
        return run

    def adopt(
        self, spec: TaskSpec, pid: int, create_time: float, sink: Callable[[Notice], None]
    ) -> RunHandle | None:
        """Follow the shim `pid` again (its log is replayed from the start: expect repeats)."""
        run = ProcessRun.adopt(pid, create_time, spec.log_path, sink)
        if run is not None:
            self._track(run)
        return run
