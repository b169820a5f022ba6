"""The daemon: a Fleet built from the settings, run until a stop request or a signal.

Control reaches the daemon through the log only (the CLI appends `DaemonStopRequested`, cancel
and agent requests), so there is no port to open. The daemon publishes a heartbeat — a small
Redis hash with a short TTL, refreshed every `HEARTBEAT_INTERVAL` seconds — holding who it is
and a digest of its live state at a log position; `forge events verify` replays the log to that
position and compares digests, and the CLI uses the heartbeat to tell whether a daemon runs.

Signals: the first SIGTERM or SIGINT is a graceful stop (running tasks get
`orchestrator.shutdown_grace` seconds), a second one stops them at once.
"""

from __future__ import annotations

import contextlib
import os
import secrets
import signal
import socket
import threading
import time
from collections.abc import Callable
from types import FrameType
from typing import Any

import pykka
import redis

from actors.breaker import BreakerPolicy
from actors.fleet import Fleet
from actors.messages import ShutdownRequested
from actors.policy import OrchestratorConfig, RetryPolicy
from actors.runtime import RuntimeAdapter
from actors.supervisor import HealthPolicy
from events.errors import LeaseLost, StoreUnavailable
from events.state import FleetState
from events.store import EventStore
from forge.daemon_process import DaemonFiles, PidRecord, hold_lock, process_create_time
from forge.log import get_logger
from forge.memory import fix_mmap_threshold
from forge.node import (
    HEARTBEAT_INTERVAL,
    HEARTBEAT_TTL,
    LEASE_TICK,
    Heartbeat,
    NodeKeeper,
    read_heartbeat,
)
from forge.private_files import private_directory, write_private
from forge.runtimes import available_runtimes, load_factory, shadowed_plugins
from forge.runtimes.workspace import GitWorkspaces
from forge.settings import Settings, environment

__all__ = [
    "HEARTBEAT_INTERVAL",
    "Daemon",
    "Heartbeat",
    "build_runtimes",
    "node_id",
    "orchestrator_config",
    "read_heartbeat",
    "state_digest",
]

_ASK_TIMEOUT = 30.0


def state_digest(state: FleetState) -> str:
    """A digest of a fleet state's hot part (`FleetState.hot_digest`: all but the finished-task
    map), equal for equal states (orderings included)."""
    return state.hot_digest()


def node_id(files: DaemonFiles) -> str:
    """This home's node id: the host name and a random suffix, made once and kept."""
    try:
        return files.nodefile.read_text().strip()
    except FileNotFoundError:
        made = f"{socket.gethostname().split('.')[0]}-{secrets.token_hex(3)}"
        private_directory(files.home)
        write_private(files.nodefile, f"{made}\n".encode())
        return made


def orchestrator_config(
    settings: Settings, node: str, max_agents: int | None = None
) -> OrchestratorConfig:
    """The orchestrator's configuration from the settings."""
    env = environment()
    allow = settings.runtime.env_allowlist
    orch = settings.orchestrator
    return OrchestratorConfig(
        node_id=node,
        lease_ttl=settings.node.lease_ttl,
        labels=frozenset(settings.node.labels) if settings.node.labels else None,
        logs_dir=str(settings.home_path / "logs"),
        max_agents=max_agents or orch.max_concurrent_agents,
        idle_timeout=orch.idle_agent_timeout,
        shutdown_grace=orch.shutdown_grace,
        default_timeout=settings.runtime.task_timeout,
        default_model=settings.runtime.default_model,
        fleet_budget_usd=orch.fleet_budget_usd,
        snapshot_every=orch.snapshot_every,
        base_env={name: env[name] for name in allow if name in env},
        retry=RetryPolicy(
            base_delay=settings.retry.base_delay,
            multiplier=settings.retry.multiplier,
            max_delay=settings.retry.max_delay,
            jitter=settings.retry.jitter,
        ),
        breaker=BreakerPolicy(
            failure_threshold=settings.breaker.failure_threshold,
            success_threshold=settings.breaker.success_threshold,
            open_timeout=settings.breaker.open_timeout,
        ),
        health=HealthPolicy(interval=orch.health_check_interval),
        permission_mode=settings.claude.permission_mode,
        allowed_tools=list(settings.claude.allowed_tools),
        disallowed_tools=list(settings.claude.disallowed_tools),
        add_dirs=list(settings.claude.add_dirs),
    )


def workspaces(settings: Settings) -> GitWorkspaces:
    """Where tasks that name a repository get their worktrees: `$FORGE_HOME/worktrees/`."""
    return GitWorkspaces(settings.home_path / "worktrees")


def build_runtimes(settings: Settings) -> dict[str, RuntimeAdapter]:
    """Every runtime that can be built here: shell and noop always, claude when installed, and
    those of plugins (`forge.runtimes` entry points). A factory with `from_settings` gets the
    settings (the claude runtime: `runtime.claude_binary`, `runtime.default_model`). A runtime
    that cannot be built is left out with a warning; its tasks fail as of an unknown runtime."""
    out: dict[str, RuntimeAdapter] = {}
    for name in shadowed_plugins():
        get_logger("forge.daemon").warning(
            "plugin runtime ignored: the name is built in", runtime=name
        )
    for name in available_runtimes():
        try:
            factory = load_factory(name)
            from_settings = getattr(factory, "from_settings", None)
            out[name] = from_settings(settings) if callable(from_settings) else factory()
        except Exception as e:  # a plugin's own error must not stop the daemon
            get_logger("forge.daemon").warning(
                "runtime unavailable", runtime=name, error=f"{type(e).__name__}: {e}"
            )
    return out


# Restarting a failed orchestrator: the waits between tries, and when to give up (exit 1, so
# that a service manager restarts the whole process): after this many failures in a row, each
# within STABLE_AFTER seconds of a start or a failed start. An unreachable log is waited out
# for as long as it takes and never counts.
RESTART_DELAYS = (0.2, 0.5, 1.0, 2.0, 5.0)
MAX_QUICK_FAILURES = 5
STABLE_AFTER = 60.0


def _outage(error: BaseException | None) -> bool:
    """Whether a failure is the log being unreachable (waited out) rather than a fault."""
    return isinstance(error, StoreUnavailable | redis.ConnectionError | redis.TimeoutError)


class Daemon:
    """One foreground daemon process over one FORGE_HOME and namespace.

    It runs a Fleet and supervises it: when the orchestrator dies -- the log unreachable for
    longer than the client's timeout, or any unexpected error -- the fleet is detached (the
    agents' processes run on), the daemon waits until the log answers again (reconnecting,
    which restarts a dead embedded server), and starts a new fleet from the log, which
    re-adopts the running attempts and records what ended meanwhile. A daemon that keeps
    failing right after each start exits 1 instead of spinning; it never lingers with nothing
    running.
    """

    def __init__(
        self,
        settings: Settings,
        client: redis.Redis,
        connect: Callable[[], redis.Redis] | None = None,
    ) -> None:
        self.settings = settings
        self.client = client
        self.connect = connect
        self.files = DaemonFiles(settings.home_path)
        self.signals = 0
        self.halt = threading.Event()  # a stop signal came while no orchestrator was running
        self.fleet: Fleet | None = None
        self.restarts = 0
        self.gave_up = False
        self.publisher: NodeKeeper | None = None
        self.log: Any = get_logger("forge.daemon")

    def _on_signal(self, signum: int, _frame: FrameType | None) -> None:
        self.signals += 1
        name = signal.Signals(signum).name
        fleet = self.fleet
        forced = self.signals > 1
        if fleet is None or fleet.orchestrator is None or not fleet.orchestrator.is_alive():
            self.log.info("stopping on signal (no orchestrator running)", signal=name)
            self.halt.set()
            return
        grace = 0.0 if forced else fleet.config.shutdown_grace
        self.log.info("stopping on signal", signal=name, forced=forced, grace=grace)
        with contextlib.suppress(pykka.ActorDeadError):
            fleet.orchestrator.tell(ShutdownRequested(grace=grace, reason=f"{name} received"))

    def run(self) -> int:
        """Run until stopped; 0 after a graceful stop, 1 if it could not go on."""
        fix_mmap_threshold()  # (before the threads: each takes its own heap)
        with hold_lock(self.files):
            me = PidRecord(
                pid=os.getpid(),
                create_time=process_create_time(os.getpid()),
                started_at=time.time(),
                node_id=node_id(self.files),
                namespace=self.settings.redis.namespace,
            )
            for signum in (signal.SIGTERM, signal.SIGINT):
                signal.signal(signum, self._on_signal)
            self.files.write(me)
            try:
                return self._serve(me)
            finally:
                self.files.remove(me)
                pykka.ActorRegistry.stop_all(block=True, timeout=_ASK_TIMEOUT)

    def _new_fleet(self, me: PidRecord) -> Fleet:
        store = EventStore(self.client, self.settings.redis.namespace)
        config = orchestrator_config(self.settings, me.node_id)
        return Fleet(
            store, build_runtimes(self.settings), config, workspaces=workspaces(self.settings)
        )

    def _serve(self, me: PidRecord) -> int:
        metrics = self._start_metrics()  # a port in use ends the command before any start
        self.fleet = self._new_fleet(me)
        try:
            fleet = self.fleet.start()  # the first start's errors end the command, as they should
        except BaseException:
            if metrics is not None:
                metrics.stop()
            raise
        node = self.settings.node
        publisher = NodeKeeper(fleet, self.client, me, node.lease_ttl, list(node.labels))
        publisher.publish()
        publisher.start()
        self.publisher = publisher
        self.log.info("daemon started", pid=me.pid, node_id=me.node_id, namespace=me.namespace)
        failures = 0  # quick failures in a row (see MAX_QUICK_FAILURES)
        try:
            while True:
                started = time.monotonic()
                while (
                    not fleet.stopped.wait(LEASE_TICK / 2)
                    and fleet.alive()
                    and fleet.failure is None
                    and not self.halt.is_set()
                ):
                    self._guard_lease(fleet, publisher)
                if self.halt.is_set() or fleet.finished.is_set():
                    break  # a stop: graceful or forced, through the orchestrator or a signal
                if fleet.stopping.is_set():  # asked to stop, it failed before recording it
                    self.log.warning("orchestrator failed while stopping; not restarted")
                    if self.shared:  # its lease runs out: another node reruns its attempts
                        fleet.fence("stopping")
                    self.halt.set()
                    break
                error = fleet.failure
                why = f"{type(error).__name__}: {error}" if error else "the tail reader died"
                self.log.error("orchestrator failed; restarting it from the log", error=why)
                if self.shared and _outage(error):
                    # its lease will run out before the log answers: another node may take
                    # this node's attempts over
                    fleet.fence("the log is unreachable")
                fleet.detach()
                if time.monotonic() - started >= STABLE_AFTER:
                    failures = 0
                elif not _outage(error):
                    failures += 1
                restarted = self._restart(me, failures)
                if restarted is None:
                    break
                fleet, failures = restarted
                publisher.attach(fleet, self.client)
                self._stop_if_asked(fleet, me)
        finally:
            publisher.stop()
            if metrics is not None:
                metrics.stop()
        failed = fleet.failure is not None and not fleet.finished.is_set()
        if self.gave_up or failed or (self.halt.is_set() and not fleet.stopped.is_set()):
            fleet.detach()  # nothing can record a stop: the agents are left to the next daemon
            self.log.info("daemon stopped; running agents are left for the next start")
            return 1 if self.gave_up or failed else 0
        graceful = fleet.close()
        self.log.info("daemon stopped", graceful=graceful)
        return 0 if graceful else 1

    def _stop_if_asked(self, fleet: Fleet, me: PidRecord) -> None:
        """A restarted fleet stops at once if a stop of this node (or of all) was asked while
        this daemon ran (the fleet that should have acted on it had failed)."""
        asked = fleet.hot_state().stop_requests
        at = max(asked.get("*", 0.0), asked.get(me.node_id, 0.0))
        if at >= me.started_at and fleet.orchestrator is not None:
            grace = self.settings.orchestrator.shutdown_grace
            self.log.info("a stop was asked while the orchestrator was down: stopping")
            with contextlib.suppress(pykka.ActorDeadError):
                fleet.orchestrator.tell(ShutdownRequested(grace=grace, reason="stop requested"))

    @property
    def shared(self) -> bool:
        """Other nodes may share the log: it is a Redis of `redis.url`, not this home's own
        embedded server (which no other machine reaches)."""
        return bool(self.settings.redis.url)

    def _guard_lease(self, fleet: Fleet, keeper: NodeKeeper) -> None:
        """Fail the fleet when its lease is over: the lease found gone, or (on a shared log)
        not renewed for half its time. On a shared log its attempts are killed first, so that
        they are dead before the lease can run out on Redis's clock and another node — one
        running now, or one starting while this one is cut off — takes them over. On this
        home's own server nobody else can, and the next fleet re-adopts them."""
        ttl = self.settings.node.lease_ttl
        if keeper.lost or (self.shared and keeper.lease_age() > ttl / 2):
            why = (
                "the lease ran out" if keeper.lost else f"no renewal for {keeper.lease_age():.1f} s"
            )
            if self.shared:
                fleet.fence(why)
            elif fleet.failure is None:
                fleet.failure = LeaseLost(why)

    def alive(self) -> tuple[bool, str]:
        """Whether the orchestrator and its tail reader run and the heartbeat loop turns (for
        `/healthz`)."""
        fleet, publisher = self.fleet, self.publisher
        if fleet is None or not fleet.alive():
            return False, "the orchestrator is not running"
        if publisher is None or time.monotonic() - publisher.ticked > HEARTBEAT_TTL:
            return False, "the heartbeat is stale"
        return True, "running"

    def _start_metrics(self) -> Any:
        """The metrics endpoint, when `[metrics] port` is set (else None: no port opened)."""
        if self.settings.metrics.port is None:
            return None
        from forge.metrics import start_metrics  # prometheus-client only when asked for

        namespace = self.settings.redis.namespace
        server = start_metrics(
            self.settings,
            self.client,
            alive=self.alive,
            heartbeat=lambda client: read_heartbeat(client, namespace),
            api_url=environment().get("ANTHROPIC_BASE_URL"),
            check_api=lambda: self.fleet is not None and "claude" in self.fleet.runtimes,
        )
        self.log.info("serving metrics", host=self.settings.metrics.host, port=server.port)
        return server

    def _restart(self, me: PidRecord, failures: int) -> tuple[Fleet, int] | None:
        """A new fleet from the log once the log answers, with the count of quick failures;
        None if told to stop meanwhile or when giving up."""
        tries = 0
        while failures < MAX_QUICK_FAILURES:
            delay = RESTART_DELAYS[min(tries, len(RESTART_DELAYS) - 1)]
            if self.halt.wait(delay):
                return None
            tries += 1
            try:
                if self.connect is not None:
                    self.client = self.connect()
                self.fleet = self._new_fleet(me)
                fleet = self.fleet.start()
            except Exception as e:
                self.log.warning(
                    "orchestrator restart failed; retrying", error=f"{type(e).__name__}: {e}"
                )
                if self.fleet is not None:
                    self.fleet.detach()
                if not _outage(e):
                    failures += 1
                continue
            self.restarts += 1
            self.log.info("orchestrator restarted from the log", restarts=self.restarts)
            return fleet, failures
        self.log.error("giving up: the orchestrator keeps failing", failures=failures)
        self.gave_up = True
        self.halt.set()
        return None
