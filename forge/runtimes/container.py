"""The container runtime: a task's command run in a container by Podman or Docker.

An attempt is the engine's `run`, attached, under the shim like any shell command: its output
is the attempt's log, its exit code the command's, the shim's timeout stops it, and a daemon
killed meanwhile adopts the shim again after its restart. What the shim cannot do for a
container, this runtime does:

- the container is named and labelled after the namespace, task and attempt
  (`forge.runtimes.container_engine`), so it is found by what it runs;
- a stop (cancel, timeout, shutdown) reaches the command through the engine, which forwards the
  signal to the container's init; when the engine's client is killed instead, the container is
  removed by name, so it never outlives its attempt;
- when the attempt has ended, its container is inspected (did the kernel kill it for memory?)
  and removed, before the outcome is known: nothing is left behind;
- an attempt whose shim is gone on adoption is lost, and its container is removed by its
  labels, so that a retry never runs beside it.

The task's working directory (its worktree when it names a repository) is bind-mounted at the
same path and is the container's working directory; its limits and network are passed to the
engine (`--memory`, `--cpus`, `--pids-limit`, `--network none`). See docs/containers.md.
"""

from __future__ import annotations

import contextlib
import os
import re
import threading
import weakref
from collections.abc import Callable

import msgspec
import psutil

from actors.runtime import (
    FailureClass,
    Health,
    Notice,
    Outcome,
    ResourceUsage,
    RunHandle,
    TaskSpec,
)
from events.redact import redact
from forge.log import get_logger
from forge.runtimes.completed import CompletedRun
from forge.runtimes.container_engine import (
    LABEL_ATTEMPT,
    LABEL_NAMESPACE,
    LABEL_TASK,
    ContainerUnavailable,
    Engine,
    RunRequest,
    container_name,
    engine_env,
    engine_env_names,
    find_engine,
)
from forge.runtimes.process import ProcessRun, secret_env_names
from forge.runtimes.tracking import ShimRuntime
from forge.runtimes.tree import CpuProbe, tree_usage, verified
from forge.settings import ContainerSettings, Settings

__all__ = ["ContainerRun", "ContainerRuntime"]

ENGINE_FAILED = 125  # both engines exit with this when they, not the command, failed
KILLED = 137  # 128 + SIGKILL: how a container the kernel killed for memory exits
_TAIL_BYTES = 4096
_log = get_logger(__name__)
# what the engines' init processes (podman's catatonit, docker's tini) say when the command
# cannot be executed
_EXEC_FAILED = re.compile(r"catatonit.*failed to exec pid1|tini.*exec .* failed")


class ContainerRun:
    """One attempt running in a container (a `RunHandle` around the shim's `ProcessRun`)."""

    def __init__(self, run: ProcessRun, engine: Engine, name: str, spec: TaskSpec) -> None:
        self._run = run
        self._engine = engine
        self._name = name
        self._memory_mb = spec.limits.memory_mb if spec.limits is not None else None
        self._lock = threading.Lock()
        self._outcome: Outcome | None = None
        self._cpu = CpuProbe()
        self._init_id: tuple[int, float] | None = None  # the container's init: pid, start

    def _init(self) -> psutil.Process | None:
        """The container's init process on this host, asked of the engine once."""
        if self._init_id is None:
            pid = self._engine.init_pid(self._name)
            with contextlib.suppress(psutil.Error):
                if pid is not None:
                    self._init_id = (pid, psutil.Process(pid).create_time())
        return None if self._init_id is None else verified(*self._init_id)

    @property
    def name(self) -> str:
        """The container's name."""
        return self._name

    @property
    def concluded(self) -> bool:
        """Whether the attempt's outcome is known (and its container removed)."""
        return self._outcome is not None

    @property
    def process(self) -> ProcessRun:
        """The shim's run of the engine's client."""
        return self._run

    @property
    def pid(self) -> int:
        return self._run.pid

    @property
    def create_time(self) -> float:
        return self._run.create_time

    def wait(self, timeout: float | None = None) -> Outcome | None:
        """The outcome once the attempt has ended and its container is gone."""
        outcome = self._run.wait(timeout)
        if outcome is None:
            return None
        with self._lock:
            if self._outcome is None:
                self._outcome = self._conclude(outcome)
            return self._outcome

    def health(self) -> Health:
        """The shim's liveness and output, the memory and CPU of the container's processes."""
        shim = self._run.health()
        init = self._init()
        if not shim.alive or init is None:
            return shim
        rss, cpu = self._cpu.sample(init)
        return msgspec.structs.replace(shim, rss_bytes=rss, cpu_percent=cpu)

    def resource_usage(self) -> ResourceUsage:
        """The command's processes in the container (its init, the engine's, not counted)."""
        init = self._init()
        return ResourceUsage() if init is None else tree_usage(init)

    def pause(self) -> None:
        """Freeze the container (and stop the shim's clock)."""
        self._engine.pause(self._name)
        self._run.pause()

    def resume(self) -> None:
        self._run.resume()
        self._engine.unpause(self._name)

    def terminate(self, grace: float = 5.0, failure: FailureClass = "cancelled") -> None:
        """SIGTERM the command (the engine forwards it), SIGKILL the engine's client after
        `grace` seconds; a container still running then is removed as the attempt ends."""
        self._run.terminate(grace, failure)

    def _conclude(self, outcome: Outcome) -> Outcome:
        """Classify what only the engine knows, then remove the container."""
        try:
            if outcome.failure == "exit" and outcome.exit_code == KILLED:
                outcome = self._killed(outcome)
            elif outcome.failure == "exit":
                said = _last_line(self._run.log_path)
                if outcome.exit_code == ENGINE_FAILED:
                    reason = f"{self._engine.kind} could not run the container: {said}"
                    outcome = msgspec.structs.replace(outcome, failure="spawn", reason=reason)
                elif _EXEC_FAILED.search(said):  # the init found no such command in the image
                    reason = f"the command cannot start in the container: {said}"
                    outcome = msgspec.structs.replace(outcome, failure="spawn", reason=reason)
        finally:
            if not self._engine.remove(self._name):
                _log.warning("container.not_removed", container=self._name)
        return outcome

    def _killed(self, outcome: Outcome) -> Outcome:
        """The command was SIGKILLed inside its container: by the kernel for memory (`oom`) if
        the engine says so; it cannot tell on cgroup v1, where the reason says what is likely
        and the failure stays `exit`."""
        limit = self._memory_mb
        if self._engine.oom_killed(self._name):
            at = f" at its limit of {limit} MiB" if limit is not None else ""
            reason = f"out of memory: the kernel killed it{at}"
            return msgspec.structs.replace(outcome, failure="oom", reason=reason)
        if limit is None:
            return outcome
        reason = (
            f"exited with code {KILLED} (SIGKILL): likely its memory limit of {limit} MiB "
            f"({self._engine.kind} could not tell)"
        )
        return msgspec.structs.replace(outcome, reason=reason)


class ContainerRuntime(ShimRuntime):
    """Run `spec.command` in a container of `spec.image` (or the settings' default image)."""

    name = "container"

    def __init__(
        self,
        settings: ContainerSettings | None = None,
        *,
        namespace: str = "forge",
        kill_grace: float = 5.0,
    ) -> None:
        """`kill_grace`: seconds between SIGTERM and SIGKILL when an attempt times out. The
        engine is looked for at the first attempt, so a daemon starts without one."""
        super().__init__()
        self.settings = settings or ContainerSettings()
        self.namespace = namespace
        self.kill_grace = kill_grace
        self._engine: Engine | None = None
        # the attempts this runtime follows (weakly: a run is dropped once its outcome is known)
        self._containers: weakref.WeakSet[ContainerRun] = weakref.WeakSet()

    @classmethod
    def from_settings(cls, settings: Settings) -> ContainerRuntime:
        return cls(settings.container, namespace=settings.redis.namespace)

    def engine(self, search_path: str | None = None) -> Engine:
        """The engine the settings name (found once); raises ContainerUnavailable."""
        if self._engine is None:
            self._engine = find_engine(self.settings.engine, search_path)
        return self._engine

    def labels(self, spec: TaskSpec) -> dict[str, str]:
        return {
            LABEL_NAMESPACE: self.namespace,
            LABEL_TASK: spec.task_id,
            LABEL_ATTEMPT: str(spec.attempt),
        }

    def execute(self, spec: TaskSpec, sink: Callable[[Notice], None]) -> RunHandle:
        image = spec.image or self.settings.image
        if not spec.command or image is None:
            what = "a command" if not spec.command else "an image (--image, or [container] image)"
            reason = f"the container runtime needs {what}"
            return CompletedRun(Outcome(ok=False, failure="invalid", reason=reason))
        try:
            engine = self.engine(spec.env.get("PATH"))
        except ContainerUnavailable as e:
            return CompletedRun(Outcome(ok=False, failure="spawn", reason=str(e)))
        name = container_name(self.namespace, spec.task_id, spec.attempt)
        if engine.kind != "podman":  # podman replaces a leftover of the same name itself
            engine.remove(name)
        cwd = os.path.abspath(spec.cwd) if spec.cwd is not None else None
        request = RunRequest(
            name=name,
            labels=self.labels(spec),
            image=image,
            command=list(spec.command),
            workdir=cwd,
            env_names=engine_env_names(spec.env),
            limits=spec.limits,
            network=spec.network,
            extra_args=list(self.settings.run_args),
        )
        try:
            run = ProcessRun.start(
                engine.run_argv(request),
                log_path=spec.log_path,
                sink=sink,
                env=engine_env(spec.env),
                cwd=cwd,
                timeout=spec.timeout,
                grace=self.kill_grace,
                mask_env=secret_env_names(spec.env),
            )
        except OSError as e:
            return CompletedRun(Outcome(ok=False, failure="spawn", reason=f"cannot start: {e}"))
        except ValueError as e:
            return CompletedRun(Outcome(ok=False, failure="invalid", reason=f"cannot start: {e}"))
        return self._follow(run, engine, name, spec)

    def adopt(
        self, spec: TaskSpec, pid: int, create_time: float, sink: Callable[[Notice], None]
    ) -> RunHandle | None:
        """Follow the shim `pid` again; if it is gone, its container is removed (found by its
        labels) and the attempt is lost."""
        try:
            engine = self.engine(spec.env.get("PATH"))
        except ContainerUnavailable:
            return None
        run = ProcessRun.adopt(pid, create_time, spec.log_path, sink)
        if run is None:
            engine.remove(*engine.labelled(self.labels(spec)))
            return None
        name = container_name(self.namespace, spec.task_id, spec.attempt)
        return self._follow(run, engine, name, spec)

    def cleanup(self) -> None:
        """Stop following every run, and remove the containers of those that have stopped
        (their outcomes are in their status files); running ones are left to the next daemon.
        Containers of attempts another daemon (a node of the same namespace) follows are
        not touched."""
        super().cleanup()
        engine = self._engine
        with self._lock:
            names = {run.name for run in self._containers if not run.concluded}
            self._containers.clear()
        if engine is not None and names:
            stopped = engine.labelled({LABEL_NAMESPACE: self.namespace}, running=False)
            engine.remove(*(n for n in stopped if n in names))

    def _follow(self, run: ProcessRun, engine: Engine, name: str, spec: TaskSpec) -> ContainerRun:
        self._track(run)
        container = ContainerRun(run, engine, name, spec)
        with self._lock:
            self._containers.add(container)
        return container


def _last_line(log_path: str) -> str:
    """The last line of the log (what the engine said when it failed), redacted."""
    try:
        with open(log_path, "rb") as f:
            f.seek(max(0, os.fstat(f.fileno()).st_size - _TAIL_BYTES))
            lines = f.read().decode("utf-8", "replace").splitlines()
    except OSError:
        return "(no output)"
    said = next((line.strip() for line in reversed(lines) if line.strip()), "(no output)")
    return redact(said)
