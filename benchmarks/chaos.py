"""`make chaos`: Forge under the faults a real machine deals it, run as a user runs it.

Everything is real: the `forge` CLI, a detached daemon with stock settings (but for eight
agents and short retry delays), its embedded server, shell agents under their shims. Each task's
command marks its start and its end in a file of its own, so a command that ran to its end twice
-- or two runs of one task alive at once -- is seen, whatever the log says.

Phase 1, daemon crashes: 300 tasks; the daemon is killed with SIGKILL 20 times at random moments
and started again each time (what a service manager does).
Phase 2, everything else: 150 longer tasks under one daemon; random SIGKILLs of agents' commands
and of their shims, a SIGKILL of the server, and a 30 s stall of the server (SIGSTOP). The daemon
of the start of the phase must still be the one running at its end.

At the end of each phase: every task completed exactly once or dead-lettered with a reason, no
command ran twice, `forge events verify` is clean; after `forge daemon stop`, no process of the
run is left. Prints each figure next to its target and exits 1 if one is missed.

    python -m benchmarks.chaos [--tasks 300] [--kills 20] [--faulty 150] [--seed 1]
"""

from __future__ import annotations

import argparse
import collections
import contextlib
import os
import random
import shutil
import signal
import subprocess
import sys
import tempfile
import time
from pathlib import Path
from typing import Any

import psutil
import redis

from events import types as t
from events.replay import replay
from events.state import FleetState
from events.store import EventStore
from events.task_index import TaskIndex
from forge.daemon_process import DaemonFiles, alive
from forge.server import EmbeddedServer

_TERMINAL = ("completed", "dead_lettered", "failed", "cancelled")


class Run:
    """One FORGE_HOME, its server, its daemon, and what the tasks' commands marked."""

    def __init__(self, seed: int) -> None:
        self.home = Path(tempfile.mkdtemp(prefix="fgc", dir="/tmp"))
        self.marks = self.home / "marks"
        self.marks.mkdir()
        self.rng = random.Random(seed)
        self.env = {k: v for k, v in os.environ.items() if not k.startswith("FORGE_")} | {
            "FORGE_HOME": str(self.home),
            "FORGE_ORCHESTRATOR_MAX_CONCURRENT_AGENTS": "8",
            "FORGE_RETRY_BASE_DELAY": "0.2",
            "FORGE_RETRY_MAX_DELAY": "2",
        }
        self.server = EmbeddedServer(self.home)
        self.files = DaemonFiles(self.home)
        self.overlaps: set[str] = set()  # tasks seen with two runs alive at once
        self._client: redis.Redis | None = None

    # -- the CLI and the log ----------------------------------------------------------

    def forge(self, *args: str, timeout: float = 120) -> subprocess.CompletedProcess[str]:
        return subprocess.run(
            [sys.executable, "-m", "forge", *args],
            env=self.env,
            capture_output=True,
            text=True,
            timeout=timeout,
            check=False,
        )

    def store(self) -> EventStore:
        if self._client is None:
            self._client = self.server.client(timeout=2.0, retries=0)
        return EventStore(self._client, "forge")

    def state(self) -> FleetState | None:
        """The replayed state, or None while the server does not answer."""
        try:
            return replay(self.store(), use_snapshot=False)[0]
        except Exception:
            return None

    def submit(self, label: str, count: int, sleep: tuple[float, float]) -> set[str]:
        lines = []
        for i in range(count):
            name = f"{label}{i:03d}"
            mark = self.marks / name
            pause = round(self.rng.uniform(*sleep), 2)
            script = f"echo s $$ >> {mark}; sleep {pause}; echo e $$ >> {mark}"
            lines.append(f'[[task]]\nname = "{name}"\ncommand = "{script}"\n')
        tasks = self.home / f"{label}.toml"
        tasks.write_text("\n".join(lines))
        done = self.forge("task", "submit", "--file", str(tasks))
        if done.returncode != 0:
            raise SystemExit(f"submit failed: {done.stderr.strip()}")
        return set(done.stdout.split())

    # -- processes ----------------------------------------------------------------------

    def daemon_pid(self) -> int | None:
        record = self.files.read()
        return record.pid if record is not None and alive(record.pid, record.create_time) else None

    def start_daemon(self) -> int:
        done = self.forge("daemon", "start")
        if done.returncode != 0:
            raise SystemExit(f"daemon start failed: {done.stderr.strip()}")
        pid = self.daemon_pid()
        assert pid is not None
        return pid

    def processes(self) -> dict[str, list[psutil.Process]]:
        """This run's live shims and commands (`sh` of a task, and what it started)."""
        found: dict[str, list[psutil.Process]] = {"shim": [], "command": []}
        for proc in psutil.process_iter(["cmdline", "status", "name"]):
            with contextlib.suppress(psutil.Error):
                if proc.info["status"] == psutil.STATUS_ZOMBIE:
                    continue
                line = " ".join(proc.info["cmdline"] or ())
                shim = "shim.py" in line or "forge-shim-" in line  # the Python or the C shim
                if shim and str(self.home) in line:
                    found["shim"].append(proc)
                elif str(self.marks) in line:
                    found["command"].append(proc)
        return found

    def watch_overlaps(self) -> None:
        """Record tasks with two of their commands alive at once."""
        runs: collections.Counter[str] = collections.Counter()
        for proc in self.processes()["command"]:
            with contextlib.suppress(psutil.Error):
                line = " ".join(proc.cmdline())
                runs[line.split(str(self.marks) + "/")[1].split(";")[0].strip()] += 1
        self.overlaps |= {name for name, n in runs.items() if n > 1}

    def server_pid(self) -> int | None:
        try:
            return int(self.server.pidfile.read_text())
        except (OSError, ValueError):
            return None

    # -- waiting and judging ------------------------------------------------------------

    def wait_settled(self, ids: set[str], limit: float, chaos: Any = None) -> FleetState:
        deadline = time.monotonic() + limit
        while True:
            self.watch_overlaps()
            if chaos is not None:
                chaos()
            state = self.state()
            if state is not None and all(state.task_state(i) in _TERMINAL for i in ids):
                # finished tasks have left the hot state: bring them back from the task index
                return TaskIndex(self.store()).full_state(state)
            if time.monotonic() > deadline:
                raise SystemExit(f"tasks not settled after {limit:.0f} s")
            time.sleep(0.2)

    def judge(self, ids: set[str], state: FleetState) -> dict[str, int]:
        events = [e.event for e in self.store().read_range()]
        completions = collections.Counter(
            e.task_id for e in events if isinstance(e, t.TaskCompleted) and e.task_id in ids
        )
        by_name = {state.tasks[i].definition.name: i for i in ids}
        ends = {}
        for name in by_name:
            mark = self.marks / str(name)
            lines = mark.read_text().split() if mark.exists() else []
            ends[name] = lines[0::2].count("e")
        for name, count in ends.items():
            if count > 1:  # say how: which attempts ended how
                print(f"   ran twice: {name}: {_story(events, by_name[name])}", flush=True)
        completed = [i for i in ids if state.tasks[i].state == "completed"]
        dead = [i for i in ids if state.tasks[i].state == "dead_lettered"]
        return {
            "tasks": len(ids),
            "completed once": sum(completions[i] == 1 for i in completed),
            "completed more than once": sum(completions[i] > 1 for i in ids),
            "dead-lettered with a reason": sum(bool(state.tasks[i].last_reason) for i in dead),
            "dead-lettered without a reason": sum(not state.tasks[i].last_reason for i in dead),
            "other end states": len(ids) - len(completed) - len(dead),
            "commands run to the end twice": sum(n > 1 for n in ends.values()),
            "completed with no finished command": sum(
                ends[str(state.tasks[i].definition.name)] == 0 for i in completed
            ),
            "tasks with two commands alive at once": len(self.overlaps & set(by_name)),
        }


def _story(events: list[t.Event], task_id: str) -> str:
    """How each attempt of a task went, from its events."""
    parts = []
    for e in events:
        if isinstance(e, t.TaskStarted) and e.task_id == task_id:
            parts.append(f"started {e.attempt}")
        elif isinstance(e, t.TaskFailed) and e.task_id == task_id:
            parts.append(f"failed {e.attempt} ({e.failure}: {e.reason})")
        elif isinstance(e, t.TaskCompleted) and e.task_id == task_id:
            parts.append(f"completed {e.attempt}")
    return "; ".join(parts)


def phase_daemon_kills(run: Run, tasks: int, kills: int) -> tuple[dict[str, int], float]:
    started = time.monotonic()
    run.start_daemon()
    ids = run.submit("k", tasks, (0.05, 0.6))
    for _ in range(kills):
        time.sleep(run.rng.uniform(0.3, 1.5))
        pid = run.daemon_pid()
        if pid is not None:
            os.kill(pid, signal.SIGKILL)
            with contextlib.suppress(psutil.Error):
                psutil.Process(pid).wait(10)
        run.watch_overlaps()
        run.start_daemon()
    state = run.wait_settled(ids, 600)
    return run.judge(ids, state), time.monotonic() - started


def phase_faults(run: Run, tasks: int) -> tuple[dict[str, int], float, bool]:
    started = time.monotonic()
    daemon = run.daemon_pid() or run.start_daemon()
    ids = run.submit("f", tasks, (0.5, 2.5))
    time.sleep(2.0)  # the submission is on disk (appendfsync everysec) before the server dies
    kills = {"commands": 0, "shims": 0}
    plan = {"server kill": 8.0, "server stall": 20.0}
    stalled_until = 0.0

    def chaos() -> None:
        nonlocal stalled_until
        now = time.monotonic() - started
        if stalled_until and now >= stalled_until:
            os.kill(run.server_pid() or 0, signal.SIGCONT)
            stalled_until = 0.0
        if "server kill" in plan and now >= plan["server kill"]:
            del plan["server kill"]
            pid = run.server_pid()
            if pid:
                os.kill(pid, signal.SIGKILL)
                print(f"   {now:5.1f} s: server killed (pid {pid})", flush=True)
        if "server stall" in plan and now >= plan["server stall"] and run.server_pid():
            del plan["server stall"]
            os.kill(run.server_pid() or 0, signal.SIGSTOP)
            stalled_until = now + 30.0
            print(f"   {now:5.1f} s: server stopped for 30 s", flush=True)
        if now < 60 and run.rng.random() < 0.4:
            procs = run.processes()
            kind = run.rng.choice(["commands", "shims"])
            pool = procs["command" if kind == "commands" else "shim"]
            pool = [p for p in pool if kind == "shims" or p.info["name"] == "sh"]
            if pool:
                with contextlib.suppress(psutil.Error):
                    run.rng.choice(pool).kill()
                    kills[kind] += 1

    state = run.wait_settled(ids, 900, chaos)
    if stalled_until:
        os.kill(run.server_pid() or 0, signal.SIGCONT)
    survived = run.daemon_pid() == daemon
    figures = run.judge(ids, state)
    figures["commands killed"] = kills["commands"]
    figures["shims killed"] = kills["shims"]
    return figures, time.monotonic() - started, survived


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--tasks", type=int, default=300)
    parser.add_argument("--kills", type=int, default=20)
    parser.add_argument("--faulty", type=int, default=150)
    parser.add_argument("--seed", type=int, default=1)
    args = parser.parse_args(argv)
    run = Run(args.seed)
    missed = []

    def show(figures: dict[str, int], targets: dict[str, int]) -> None:
        for name, value in figures.items():
            target = targets.get(name)
            ok = target is None or value == target
            if not ok:
                missed.append(name)
            want = "" if target is None else f"   target {target}"
            print(f"   {name:<40} {value:>6}{want}{'' if ok else '   MISSED'}", flush=True)

    bad = {
        "completed more than once": 0,
        "dead-lettered without a reason": 0,
        "other end states": 0,
        "commands run to the end twice": 0,
        "completed with no finished command": 0,
        "tasks with two commands alive at once": 0,
    }
    try:
        print(f"chaos in {run.home} (seed {args.seed})", flush=True)
        print(f"== phase 1: {args.kills} daemon kill -9 during {args.tasks} tasks ==", flush=True)
        figures, took = phase_daemon_kills(run, args.tasks, args.kills)
        show(figures, bad | {"completed once": args.tasks})
        print(f"   (took {took:.0f} s)", flush=True)

        print(f"== phase 2: {args.faulty} tasks, kills of commands, shims, server; a stall ==")
        figures, took, survived = phase_faults(run, args.faulty)
        show(
            figures | {"daemon of the start still running": int(survived)},
            bad | {"daemon of the start still running": 1},
        )
        print(f"   (took {took:.0f} s)", flush=True)

        verify = run.forge("events", "verify")
        print(f"   events verify: exit {verify.returncode} {verify.stdout.strip()[:200]}")
        if verify.returncode != 0:
            missed.append("events verify")
        stop = run.forge("daemon", "stop")
        time.sleep(0.5)
        left = run.processes()
        leftover = len(left["shim"]) + len(left["command"]) + (run.daemon_pid() is not None)
        show(
            {"processes left after daemon stop": leftover + (stop.returncode != 0)},
            {"processes left after daemon stop": 0},
        )
    finally:
        for procs in run.processes().values():
            for proc in procs:
                with contextlib.suppress(psutil.Error):
                    proc.kill()
        pid = run.server_pid()
        if pid:
            with contextlib.suppress(ProcessLookupError):
                os.kill(pid, signal.SIGCONT)
        run.forge("server", "stop", "--force")
        shutil.rmtree(run.home, ignore_errors=True)
    print("chaos: all targets met" if not missed else f"chaos: MISSED {', '.join(missed)}")
    return 1 if missed else 0


if __name__ == "__main__":
    sys.exit(main())
