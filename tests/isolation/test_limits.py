"""Per-attempt limits, proven with the real cgroups of the machine: an attempt over its memory
limit is killed by the kernel and recorded `oom`; a fork bomb is stopped at its process limit
and nothing of it is left running; the CPU share is the kernel's; an adopted attempt's cgroup
is found again; every cgroup is removed when its attempt ends."""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

import psutil

from actors.runtime import Outcome
from events.event_base import Limits
from forge.runtimes.cgroups import Detected, Limiter, detect
from forge.runtimes.shell import ShellRuntime
from tests.isolation.conftest import (
    WAIT,
    Home,
    descendants_of_session,
    needs_bwrap,
    needs_cgroups,
    wait_until_gone,
)
from tests.runtimes.conftest import Collector

PY = sys.executable
HOG = [PY, "-I", "-c", "b = bytearray(300 * 2**20); print('ALLOCATED', len(b))"]
BOMB = ["/bin/bash", "-c", "bomb() { bomb & bomb & wait; }; bomb"]  # every process waits: it grows


def _cgroup_dirs(spec_log: str) -> list[str]:
    limiter = Limiter.load(spec_log)
    assert limiter is not None
    return list(limiter.dirs.values())


@needs_cgroups
def test_over_the_memory_limit_the_attempt_is_killed_and_recorded_oom(
    home: Home, tmp_path: Path
) -> None:
    spec = home.spec(HOG, tmp_path, limits=Limits(memory_mb=64))
    outcome, lines = home.run(spec)
    assert outcome.failure == "oom", outcome
    assert "memory limit of 64 MiB" in outcome.reason
    assert not any(line.startswith("ALLOCATED") for line in lines)
    assert all(not os.path.exists(d) for d in _cgroup_dirs(spec.log_path))
    unlimited, lines = home.run(home.spec(HOG, tmp_path))  # the same program, no limit
    assert unlimited.ok, unlimited
    assert f"ALLOCATED {300 * 2**20}" in lines


TREE = [
    PY,
    "-I",
    "-c",
    "import subprocess, sys\n"
    "code = 'import sys; b = bytes([7]) * (40 * 2**20); print(1, flush=True); sys.stdin.readline();"
    " print(2, flush=True)'\n"
    "kids = [subprocess.Popen([sys.executable, '-c', code], stdin=subprocess.PIPE,"
    " stdout=subprocess.PIPE) for _ in range(3)]\n"
    "held = 0\n"
    "for kid in kids:\n"
    "    kid.stdout.readline()  # allocated, or killed\n"
    "for kid in kids:  # each answers only if it is still alive, holding its 40 MiB\n"
    "    try:\n"
    "        kid.stdin.write(b'\\n')\n"
    "        kid.stdin.flush()\n"
    "    except BrokenPipeError:\n"
    "        continue\n"
    "    held += kid.stdout.readline() == b'2\\n'\n"
    "print('HELD', held)\n"
    "sys.exit(0 if held == 3 else 1)\n",
]


@needs_cgroups
def test_the_memory_limit_covers_the_whole_process_tree(home: Home, tmp_path: Path) -> None:
    """Three children of 40 MiB each, every one under the limit on its own (what an rlimit
    would check), over it together: the kernel kills one, and the attempt is oom."""
    outcome, lines = home.run(home.spec(TREE, tmp_path, limits=Limits(memory_mb=64)))
    assert outcome.failure == "oom", (outcome, lines)
    assert "HELD 3" not in lines
    unlimited, lines = home.run(home.spec(TREE, tmp_path))
    assert unlimited.ok, (unlimited, lines)
    assert "HELD 3" in lines


@needs_cgroups
@needs_bwrap
def test_the_memory_limit_holds_in_the_sandbox_too(home: Home, tmp_path: Path) -> None:
    outcome, _ = home.run(home.spec(HOG, tmp_path, limits=Limits(memory_mb=64), sandbox=True))
    assert outcome.failure == "oom", outcome


def _stopped_bomb(home: Home, tmp_path: Path, sandbox: bool) -> None:
    spec = home.spec(BOMB, tmp_path, limits=Limits(pids=64), sandbox=sandbox)
    sink = Collector()
    handle = home.runtime.execute(spec, sink)
    shim = handle.pid
    outcome = handle.wait(WAIT)
    assert isinstance(outcome, Outcome), "the fork bomb was not stopped"
    assert outcome.failure == "unhealthy", outcome
    assert "process limit of 64" in outcome.reason
    assert wait_until_gone([p.pid for p in descendants_of_session(shim)]) == []
    assert all(not os.path.exists(d) for d in _cgroup_dirs(spec.log_path))
    assert not any(
        "bomb" in " ".join(p.info["cmdline"] or []) and str(tmp_path) in (p.info["cwd"] or "")
        for p in psutil.process_iter(["cmdline", "cwd"])
    )


@needs_cgroups
def test_a_fork_bomb_is_stopped_at_the_process_limit_and_nothing_is_left(
    home: Home, tmp_path: Path
) -> None:
    _stopped_bomb(home, tmp_path, sandbox=False)


@needs_cgroups
@needs_bwrap
def test_a_sandboxed_fork_bomb_is_stopped_too(home: Home, tmp_path: Path) -> None:
    _stopped_bomb(home, tmp_path, sandbox=True)


@needs_cgroups
def test_the_command_runs_in_its_cgroup_with_the_cpu_share_set(home: Home, tmp_path: Path) -> None:
    code = (
        "import time\n"
        "print(open('/proc/self/cgroup').read().replace(chr(10), ' '), flush=True)\n"
        "start, cpu = time.monotonic(), time.process_time()\n"
        "while time.monotonic() - start < 1.0: pass\n"
        "print('CPU', time.process_time() - cpu)"
    )
    spec = home.spec([PY, "-I", "-c", code], tmp_path, limits=Limits(cpus=0.2))
    limiter_dirs: list[str] = []
    sink = Collector()
    handle = home.runtime.execute(spec, sink)
    sink.wait_for_line(lambda line: "forge/attempt-" in line)
    limiter_dirs = _cgroup_dirs(spec.log_path)
    quota = [Path(d, "cpu.cfs_quota_us") for d in limiter_dirs if "/cpu/" in d]
    quota += [Path(d, "cpu.max") for d in limiter_dirs if detect().mode == "v2"]
    assert quota[0].read_text().split()[0] == "20000"
    outcome = handle.wait(WAIT)
    assert outcome is not None
    assert outcome.ok, outcome
    used = float(sink.wait_for_line(lambda line: line.startswith("CPU")).split()[1])
    assert used < 0.5  # a fifth of a core for a second (a core would give about 1.0)
    assert all(not os.path.exists(d) for d in limiter_dirs)


@needs_cgroups
def test_an_adopted_attempt_keeps_its_limits_and_its_cgroup_is_found_again(
    home: Home, tmp_path: Path
) -> None:
    go = tmp_path / "go"
    code = (
        "import os, time\n"
        "print('READY', flush=True)\n"
        f"while not os.path.exists({str(go)!r}): time.sleep(0.01)\n"
        "b = bytearray(300 * 2**20)\n"
        "print('ALLOCATED')"
    )
    spec = home.spec([PY, "-I", "-c", code], tmp_path, limits=Limits(memory_mb=64))
    first = Collector()
    handle = home.runtime.execute(spec, first)
    first.wait_for_line(lambda line: line == "READY")
    pid, created = handle.pid, handle.create_time
    home.runtime.cleanup()  # the daemon goes away; the attempt runs on
    dirs = _cgroup_dirs(spec.log_path)
    assert all(os.path.isdir(d) for d in dirs)
    later = ShellRuntime(hidden=[str(home.home)])
    try:
        adopted = later.adopt(spec, pid, created, Collector())
        assert adopted is not None
        go.write_text("")
        outcome = adopted.wait(WAIT)
        assert outcome is not None
        assert outcome.failure == "oom", outcome
        assert all(not os.path.exists(d) for d in dirs)
    finally:
        later.cleanup()


def test_without_cgroups_rlimits_bound_each_process(tmp_path: Path) -> None:
    limiter = Limiter.create(
        Limits(memory_mb=64), str(tmp_path / "attempt-1.log"), Detected(mode="rlimit")
    )
    done = subprocess.run(
        [*limiter.prefix(), *HOG], capture_output=True, text=True, timeout=WAIT, check=False
    )
    assert done.returncode != 0
    assert "MemoryError" in done.stderr
    assert Limiter.load(str(tmp_path / "attempt-1.log")) == limiter


def test_detection_names_what_the_machine_has() -> None:
    found = detect()
    if os.geteuid() != 0:
        assert found.mode == "rlimit"
    elif Path("/sys/fs/cgroup/cgroup.controllers").exists() and found.mode == "v2":
        assert set(found.bases) == {"unified"}
    elif found.mode == "v1":
        assert set(found.bases) == {"memory", "cpu", "pids"}
        assert all(Path(b, "cgroup.procs").exists() for b in found.bases.values())
