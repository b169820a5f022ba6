"""AgentSupervisor: one actor per agent, owning the attempt its agent runs.

It starts attempts through the runtime adapter (or re-adopts one a previous daemon started),
forwards what the runtime reports to the orchestrator, health-checks the attempt every interval
(alive by PID *and* start time, RSS against a limit, no output for too long = stuck), stops an
unhealthy or cancelled attempt (SIGTERM, then SIGKILL after a grace period), pauses and resumes
it, and reports how it ended. It appends nothing itself: the orchestrator records every
decision in the log before acting on it.
"""

from __future__ import annotations

import contextlib
import os
import threading
import time
from typing import Any

import msgspec
import pykka
import structlog

from actors.clock import Clock, SystemClock
from actors.messages import (
    AdoptAttempt,
    AttemptEnded,
    AttemptStarted,
    CancelAttempt,
    DetachAgent,
    FenceAgent,
    HealthTick,
    NoticeReceived,
    PauseAgent,
    ResumeAgent,
    RunAttempt,
    SupervisorFailed,
)
from actors.runtime import (
    Notice,
    Outcome,
    OutputLine,
    ProgressNotice,
    RunHandle,
    RuntimeAdapter,
    TaskSpec,
    Workspaces,
)
from actors.scheduler import Scheduler, Teller

__all__ = ["PROGRESS_INTERVAL", "AgentSupervisor", "HealthPolicy"]

PROGRESS_INTERVAL = 1.0  # seconds between progress events made from raw output
PROGRESS_CHARS = 200


class HealthPolicy(msgspec.Struct, frozen=True, kw_only=True):
    interval: float = 30.0  # seconds between checks
    max_rss_bytes: int | None = None  # kill an attempt whose process tree grows past this
    stuck_after: float | None = None  # kill an attempt silent for this long (seconds)
    kill_grace: float = 5.0  # SIGTERM → SIGKILL


class _Ended(msgspec.Struct, frozen=True):
    attempt: int
    outcome: Outcome


class _Current(msgspec.Struct):
    spec: TaskSpec
    epoch: int
    handle: Any  # RunHandle (a Protocol, which msgspec cannot hold as a type)
    unhealthy: str | None = None


class AgentSupervisor(pykka.ThreadingActor):
    def __init__(
        self,
        agent_id: str,
        runtime: RuntimeAdapter,
        orchestrator: Teller,
        scheduler: Scheduler,
        health: HealthPolicy,
        workspaces: Workspaces | None = None,
        clock: Clock | None = None,
    ) -> None:
        super().__init__()
        self.clock: Clock = clock or SystemClock()  # the orchestrator's: starts are stamped here
        self.agent_id = agent_id
        self.workspaces = workspaces
        self.runtime = runtime
        self.orchestrator = orchestrator
        self.scheduler = scheduler
        self.health = health
        self.current: _Current | None = None
        self.detached = False
        self.log: Any = None

    def on_start(self) -> None:
        self.log = structlog.get_logger("actors.supervisor").bind(agent_id=self.agent_id)

    def on_receive(self, message: Any) -> Any:
        match message:
            case RunAttempt(spec=spec, epoch=epoch):
                self._run(spec, epoch)
            case AdoptAttempt(spec=spec, epoch=epoch, pid=pid, create_time=create_time):
                self._adopt(spec, epoch, pid, create_time)
            case CancelAttempt(task_id=task_id, attempt=attempt, grace=grace, failure=failure):
                cur = self.current
                if cur and cur.spec.task_id == task_id and cur.spec.attempt == attempt:
                    cur.handle.terminate(grace, failure)
            case PauseAgent():
                if self.current is not None:
                    self.current.handle.pause()
            case ResumeAgent():
                if self.current is not None:
                    self.current.handle.resume()
            case HealthTick(attempt=attempt):
                self._check(attempt)
            case _Ended(attempt=attempt, outcome=outcome):
                self._ended(attempt, outcome)
            case DetachAgent():
                self.detached = True
                self.current = None
            case FenceAgent():
                self.detached = True  # nothing is reported: the node's log writes are fenced
                if self.current is not None:
                    self.current.handle.terminate(0.0, "lost")
                self.current = None
            case _:
                return super().on_receive(message)
        return None

    def on_stop(self) -> None:
        cur = self.current
        if cur is not None:
            cur.handle.terminate(self.health.kill_grace, "cancelled")

    def on_failure(self, *exc_info: Any) -> None:
        """Never a silent zombie: stop the attempt (its processes must not run on unwatched)
        and tell the orchestrator, which records the attempt as lost and retires the agent."""
        error = f"{type(exc_info[1]).__name__}: {exc_info[1]}"
        self.log.error("agent supervisor failed", error=error)
        cur = self.current
        self.current = None
        if cur is not None:
            try:
                cur.handle.terminate(0.0, "lost")
            except Exception as e:
                self.log.error("could not stop the attempt", error=str(e))
        with contextlib.suppress(pykka.ActorDeadError):
            self.orchestrator.tell(SupervisorFailed(self.agent_id, error))

    # -- attempts -------------------------------------------------------------------------

    def _sink(self, spec: TaskSpec) -> Any:
        """Forward the runtime's notices; raw output lines become progress, at most one per
        `PROGRESS_INTERVAL` so that a chatty agent cannot flood the log (the full output is
        in the attempt's log file)."""
        orchestrator, agent_id = self.orchestrator, self.agent_id
        last = [-PROGRESS_INTERVAL]

        def deliver(notice: Notice) -> None:
            if isinstance(notice, OutputLine):
                now = time.monotonic()
                text = notice.text.strip()
                if not text or now - last[0] < PROGRESS_INTERVAL:
                    return
                last[0] = now
                notice = ProgressNotice(summary=text[:PROGRESS_CHARS])
            orchestrator.tell(NoticeReceived(agent_id, spec.task_id, spec.attempt, notice))

        return deliver

    def _run(self, spec: TaskSpec, epoch: int) -> None:
        workspace = branch = None
        if spec.repo is not None:
            if self.workspaces is None:
                self._report_failed(spec, epoch, "invalid", "no workspace manager for --repo")
                return
            try:
                workspace, branch = self.workspaces.prepare(spec.task_id, spec.repo)
            except Exception as e:  # a git error is the task's problem, not the agent's
                self._report_failed(spec, epoch, "invalid", f"cannot prepare worktree: {e}")
                return
            spec = msgspec.structs.replace(spec, cwd=workspace)
        if self._adopt_earlier(spec, epoch, (workspace, branch)):
            return
        try:
            handle = self.runtime.execute(spec, self._sink(spec))
        except Exception as e:  # a task the runtime cannot start is the task's failure
            self.log.warning("attempt could not start", task_id=spec.task_id, error=str(e))
            self._report_failed(spec, epoch, "spawn", f"cannot start the attempt: {e}")
            return
        self._watch(spec, epoch, handle, workspace=(workspace, branch))

    def _adopt_earlier(
        self, spec: TaskSpec, epoch: int, workspace: tuple[str | None, str | None]
    ) -> bool:
        """If this very attempt was started before -- the log lost the appends that said so
        (a server that crashed before writing them to disk) -- follow it instead of running
        the command a second time. True if it was adopted."""
        if not _written_since(spec.log_path, spec.submitted_at):
            return False  # no file, or one left by another task of the same id (a namespace)
        try:
            found = self.runtime.locate(spec)
            if found is None:
                return False
            handle = self.runtime.adopt(spec, found[0], found[1], self._sink(spec))
        except Exception as e:
            self.log.warning(
                "could not look for an earlier start", task_id=spec.task_id, error=str(e)
            )
            return False
        if handle is None:
            return False
        self.log.warning(
            "attempt was started before and the log lost it: adopted",
            task_id=spec.task_id,
            attempt=spec.attempt,
            pid=found[0],
        )
        self._watch(spec, epoch, handle, workspace=workspace)
        return True

    def _report_failed(self, spec: TaskSpec, epoch: int, failure: Any, reason: str) -> None:
        self.orchestrator.tell(
            AttemptEnded(
                self.agent_id,
                spec.task_id,
                spec.attempt,
                epoch,
                Outcome(ok=False, failure=failure, reason=reason),
            )
        )

    def _adopt(self, spec: TaskSpec, epoch: int, pid: int, create_time: float) -> None:
        try:
            handle = self.runtime.adopt(spec, pid, create_time, self._sink(spec))
        except Exception as e:
            self.log.warning("attempt could not be adopted", task_id=spec.task_id, error=str(e))
            handle = None
        if handle is None:
            reason = "the agent process was gone when the daemon restarted"
            self._report_failed(spec, epoch, "lost", reason)
            return
        self.log.info("attempt adopted", task_id=spec.task_id, attempt=spec.attempt, pid=pid)
        self._watch(spec, epoch, handle, announce=False)

    def _watch(
        self,
        spec: TaskSpec,
        epoch: int,
        handle: RunHandle,
        announce: bool = True,
        workspace: tuple[str | None, str | None] = (None, None),
    ) -> None:
        self.current = _Current(spec=spec, epoch=epoch, handle=handle)
        if announce:
            self.orchestrator.tell(
                AttemptStarted(
                    self.agent_id,
                    spec.task_id,
                    spec.attempt,
                    epoch,
                    handle.pid,
                    handle.create_time,
                    spec.log_path,
                    spec.session_id,
                    workspace[0],
                    workspace[1],
                    self.clock.now(),
                )
            )
        me = self.actor_ref
        done = handle.wait(0)
        if done is not None:  # ended already (a no-op, a spawn failure): no thread, no checks
            self._ended(spec.attempt, done)
            return

        def wait() -> None:
            outcome = handle.wait()
            if outcome is not None:
                with contextlib.suppress(pykka.ActorDeadError):  # detached or failed meanwhile
                    me.tell(_Ended(spec.attempt, outcome))

        threading.Thread(target=wait, name=f"forge-wait-{self.agent_id}", daemon=True).start()
        self.scheduler.after(self.health.interval, me, HealthTick(spec.attempt))

    def _check(self, attempt: int) -> None:
        cur = self.current
        if cur is None or cur.spec.attempt != attempt or cur.unhealthy:
            return
        report = cur.handle.health()
        problem = None
        limit = self.health.max_rss_bytes
        if report.alive and limit is not None and report.rss_bytes > limit:
            problem = f"resident memory {report.rss_bytes} B exceeds the limit of {limit} B"
        stuck = self.health.stuck_after
        if report.alive and stuck is not None and report.seconds_since_output > stuck:
            problem = f"no output for {report.seconds_since_output:.0f} s (stuck)"
        if problem is not None:
            self.log.warning("attempt unhealthy", task_id=cur.spec.task_id, reason=problem)
            cur.unhealthy = problem
            cur.handle.terminate(self.health.kill_grace, "unhealthy")
            return
        self.scheduler.after(self.health.interval, self.actor_ref, HealthTick(attempt))

    def _ended(self, attempt: int, outcome: Outcome) -> None:
        cur = self.current
        if cur is None or cur.spec.attempt != attempt:
            return
        if cur.unhealthy and outcome.failure == "unhealthy":
            outcome = msgspec.structs.replace(outcome, reason=cur.unhealthy)
        self.current = None
        if outcome.ok and cur.spec.repo is not None and self.workspaces is not None:
            try:
                self.workspaces.release(
                    cur.spec.task_id, cur.spec.repo, succeeded=True, attempt=cur.spec.attempt
                )
            except Exception as e:  # the result stands; the worktree is left for cleanup
                self.log.warning("worktree not removed", task_id=cur.spec.task_id, error=str(e))
        self.orchestrator.tell(
            AttemptEnded(self.agent_id, cur.spec.task_id, attempt, cur.epoch, outcome)
        )


# File times are coarse (a clock tick on Linux, a second or two on some file systems), so a log
# created just after its task was submitted may read as a little older.
_MTIME_SLACK = 2.0


def _written_since(log_path: str, submitted_at: float | None) -> bool:
    """Whether an attempt's log exists and was written after the task was submitted: an
    earlier start of this attempt cannot be older than its task."""
    try:
        written = os.stat(log_path).st_mtime
    except OSError:
        return False
    return submitted_at is None or written >= submitted_at - _MTIME_SLACK
