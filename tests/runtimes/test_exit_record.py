"""A shim killed after it reaped its command but before it wrote the status (while it killed
what was left and drained the output) does not take the command's exit status with it: the
exit record it wrote at the reap tells the runtime, live or after a restart, how the command
ended, so the attempt is reported with that outcome and its command never runs a second time.

The window is made deterministic by the shims' test hook: FORGE_SHIM_TEST_HOLD_AFTER_EXIT in
the shim's own environment (`env VAR=S shim ...`) has it sleep right after the exit record.
"""

from __future__ import annotations

import os
import shutil
import signal
from pathlib import Path

import msgspec
import psutil
import pytest
import redis

from events import types as t
from forge.runtimes import ProcessRun, ShellRuntime, shim_launch
from forge.runtimes.logfile import ExitStatus, exit_record_path_for, status_path_for
from forge.runtimes.process import find_shim
from forge.runtimes.tree import verified
from tests.actors.helpers import all_terminal, config, events_of, running_fleet, submit, wait_for
from tests.runtimes.conftest import BASE_ENV, WAIT, Collector, Harness, wait_until

HOLD = "FORGE_SHIM_TEST_HOLD_AFTER_EXIT"
# the command marks its run, leaves a background process behind (in its group: the shim would
# kill it after the hold) and ends with the given code
SCRIPT = 'echo ran >> "$MARKS"; sleep 30 & echo $! > "$BACKGROUND"; exit {code}'


@pytest.fixture
def held_shim(shim: list[str], monkeypatch: pytest.MonkeyPatch) -> list[str]:
    """Each shim of the test (the C one, then the Python one) holds a minute after its exit
    record: long past any wait of the test, so that the test kills it inside the window."""
    env = shutil.which("env")
    assert env is not None
    command = [env, f"{HOLD}=60", *shim]
    monkeypatch.setattr(shim_launch, "shim_command", lambda: list(command))
    return command


def _start(harness: Harness, tmp: Path, code: int) -> tuple[ProcessRun, Path, Path]:
    marks, background = tmp / "marks", tmp / "background"
    env = {**BASE_ENV, "MARKS": str(marks), "BACKGROUND": str(background)}
    handle = harness.run(harness.spec("sh", "-c", SCRIPT.format(code=code), env=env))
    assert isinstance(handle, ProcessRun)
    return handle, marks, background


def _kill_in_the_window(handle: ProcessRun) -> None:
    """SIGKILL the shim once it has reaped the command, before it writes the status."""
    wait_until(lambda: os.path.exists(exit_record_path_for(handle.log_path)))
    assert not os.path.exists(status_path_for(handle.log_path))
    os.kill(handle.pid, signal.SIGKILL)


def _alive(pid: int) -> bool:
    try:
        return psutil.Process(pid).status() != psutil.STATUS_ZOMBIE
    except psutil.NoSuchProcess:
        return False


@pytest.mark.parametrize("code", [0, 3])
def test_a_shim_killed_after_its_command_ended_reports_how_the_command_ended(
    harness: Harness, held_shim: list[str], code: int
) -> None:
    handle, marks, background = _start(harness, harness.tmp, code)
    _kill_in_the_window(handle)
    outcome = handle.wait(WAIT)

    assert not os.path.exists(status_path_for(handle.log_path))  # it died in the window
    assert outcome is not None
    assert (outcome.ok, outcome.exit_code) == (code == 0, code)
    assert outcome.failure == (None if code == 0 else "exit")
    assert marks.read_text() == "ran\n"
    assert not _alive(int(background.read_text()))  # what it left died before the news


def test_a_restarted_daemon_adopts_an_attempt_whose_shim_was_killed_after_its_command(
    harness: Harness, held_shim: list[str]
) -> None:
    first, marks, _background = _start(harness, harness.tmp, 5)
    pid, create_time = first.pid, first.create_time
    first.detach()  # the daemon died
    _kill_in_the_window(first)  # then the shim
    os.waitpid(pid, 0)  # the test process started it: reap it, as init would have
    assert verified(pid, create_time) is None

    assert find_shim(first.log_path) == (pid, 0.0)  # found by its exit record, too
    spec = harness.spec(command=["true"], log_path=first.log_path)
    handle = harness.keep(harness.runtime.adopt(spec, pid, create_time, Collector()))
    assert handle is not None  # not lost: it would be retried
    outcome = handle.wait(WAIT)

    assert outcome is not None
    assert (outcome.failure, outcome.exit_code) == ("exit", 5)
    assert marks.read_text() == "ran\n"


def test_the_status_is_the_authority_and_a_normal_end_leaves_no_exit_record(
    harness: Harness, shim: list[str]
) -> None:
    handle = harness.run(harness.spec("sh", "-c", "exit 2"))
    outcome = handle.wait(WAIT)
    assert outcome is not None
    assert outcome.exit_code == 2
    record = exit_record_path_for(handle.log_path)
    assert os.path.exists(status_path_for(handle.log_path))
    assert not os.path.exists(record)

    # an exit record that disagrees (none should exist beside a status) does not win
    Path(record).write_bytes(msgspec.json.encode(ExitStatus(pid=handle.pid, exit_code=9)))
    spec = harness.spec(command=["true"], log_path=handle.log_path)
    again = harness.keep(harness.runtime.adopt(spec, handle.pid, handle.create_time, Collector()))
    assert again is not None
    adopted = again.wait(WAIT)
    assert adopted is not None
    assert adopted.exit_code == 2


def test_the_task_of_a_shim_killed_after_its_command_ended_completes_at_once(
    redis_client: redis.Redis, tmp_path: Path, held_shim: list[str]
) -> None:
    marks = tmp_path / "marks"
    runtimes = {"shell": ShellRuntime(kill_grace=0.5)}
    with running_fleet(redis_client, runtimes, config(tmp_path / "logs", max_agents=1)) as (
        fleet,
        store,
    ):
        submit(store, "once", command=["sh", "-c", f"echo ran >> {marks}"])
        state = wait_for(fleet, lambda s: "once" in s.tasks and s.tasks["once"].pid is not None)
        pid, log_path = state.tasks["once"].pid, state.tasks["once"].log_path
        assert pid is not None
        assert log_path is not None
        wait_until(lambda: os.path.exists(exit_record_path_for(log_path)))
        os.kill(pid, signal.SIGKILL)
        state = wait_for(fleet, all_terminal("once"))

        assert (state.tasks["once"].state, state.tasks["once"].attempt) == ("completed", 1)
        assert events_of(store, t.TaskFailed, "once") == []  # neither lost nor crashed
        assert marks.read_text() == "ran\n"  # the command ran once
