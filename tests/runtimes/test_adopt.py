"""Re-adopting attempts after the daemon died: by PID *and* create time, never the PID alone."""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import textwrap
from pathlib import Path

import msgspec
import psutil
import pytest

from forge.runtimes import ProcessRun
from forge.runtimes.process import find_shim
from tests.runtimes.conftest import WAIT, Collector, Harness

pytestmark = pytest.mark.usefixtures("shim")  # the contract: both shims pass it

# A stand-in daemon: starts one attempt under the shim named by argv[2], reports its
# (pid, create_time) once the attempt's first line came through, then waits to be killed.
DAEMON = textwrap.dedent(
    """
    import json, sys, threading
    from actors.runtime import TaskSpec
    from forge.runtimes import ShellRuntime, shim_launch

    shim_launch.shim_command = lambda: json.loads(sys.argv[2])

    seen = threading.Event()
    spec = TaskSpec(**json.loads(sys.argv[1]))
    run = ShellRuntime().execute(spec, lambda notice: seen.set())
    seen.wait(10)
    print(json.dumps({"pid": run.pid, "create_time": run.create_time}), flush=True)
    sys.stdin.read()
    """
)


def _gate_script(go: Path) -> str:
    return f"echo started; while [ ! -e {go} ]; do sleep 0.02; done; echo finished"


def test_an_attempt_survives_kill_9_of_its_daemon_and_is_adopted(
    harness: Harness, sink: Collector, shim: list[str]
) -> None:
    go = harness.tmp / "go"
    spec = harness.spec("sh", "-c", _gate_script(go))
    daemon = subprocess.Popen(
        [sys.executable, "-c", DAEMON, json.dumps(msgspec.to_builtins(spec)), json.dumps(shim)],
        stdin=subprocess.PIPE,
        stdout=subprocess.PIPE,
        text=True,
    )
    try:
        assert daemon.stdout is not None
        started = json.loads(daemon.stdout.readline())
    finally:
        daemon.kill()  # SIGKILL: no clean-up of any kind in the daemon
        daemon.wait(WAIT)
        if daemon.stdin is not None:
            daemon.stdin.close()
        if daemon.stdout is not None:
            daemon.stdout.close()

    handle = harness.keep(harness.runtime.adopt(spec, started["pid"], started["create_time"], sink))
    assert handle is not None
    assert handle.health().alive  # the attempt outlived its daemon
    sink.wait_for_line(lambda line: line == "started")  # the log is replayed from the start
    go.touch()
    outcome = handle.wait(WAIT)

    assert outcome is not None
    assert outcome.ok
    assert sink.lines() == ["started", "finished"]


def test_adopt_refuses_a_process_whose_create_time_differs(harness: Harness) -> None:
    spec = harness.spec("sleep", "30")
    running = harness.run(spec)

    assert harness.runtime.adopt(spec, running.pid, running.create_time + 5, Collector()) is None
    assert harness.runtime.adopt(spec, os.getpid(), running.create_time, Collector()) is None


def test_adopt_of_a_vanished_attempt_returns_none(harness: Harness) -> None:
    spec = harness.spec("true")
    gone = psutil.Process(os.getpid()).create_time()  # a pid that is not the shim
    assert harness.runtime.adopt(spec, 2**22 - 1, gone, Collector()) is None


def test_adopt_of_an_attempt_that_ended_unwatched_reports_its_outcome(
    harness: Harness, sink: Collector
) -> None:
    spec = harness.spec("sh", "-c", "echo done; exit 4")
    first = harness.run(spec)
    assert first.wait(WAIT) is not None

    handle = harness.keep(harness.runtime.adopt(spec, first.pid, first.create_time, sink))
    assert handle is not None
    outcome = handle.wait(WAIT)

    assert outcome is not None
    assert outcome.failure == "exit"
    assert outcome.exit_code == 4
    assert sink.lines() == ["done"]


def test_an_adopted_run_can_be_stopped_and_resumes_from_an_offset(
    harness: Harness, sink: Collector
) -> None:
    spec = harness.spec("sh", "-c", "echo one; echo two; exec sleep 30")
    first = harness.run(spec, sink)
    sink.wait_for_line(lambda line: line == "two")
    assert isinstance(first, ProcessRun)
    offset = first.offset
    first.detach()  # the old daemon's view of the attempt is gone

    later = Collector()
    handle = ProcessRun.adopt(first.pid, first.create_time, spec.log_path, later, offset=offset)
    harness.keep(handle)
    assert handle is not None
    handle.terminate(grace=0, failure="lost")
    outcome = handle.wait(WAIT)

    assert outcome is not None
    assert outcome.failure == "lost"
    assert outcome.signal == signal.SIGKILL
    assert later.lines() == []  # nothing before the offset was replayed


def test_a_running_shim_is_found_by_its_log_file(harness: Harness) -> None:
    spec = harness.spec("sleep", "30")
    running = harness.run(spec)
    assert isinstance(running, ProcessRun)

    found = find_shim(spec.log_path)

    assert found is not None
    assert found[0] == running.pid
    assert abs(found[1] - running.create_time) < 0.01
    assert find_shim(str(harness.tmp / "some-other.log")) is None
