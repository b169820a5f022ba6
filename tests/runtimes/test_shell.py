"""The shell runtime with real processes: every way an attempt can end, and what leaves it."""

from __future__ import annotations

import os
import signal
import time

import psutil
import pytest

from actors.runtime import RunHandle, RuntimeAdapter, is_transient
from forge.errors import NotFound
from forge.runtimes import ProcessRun, read_status, status_path_for
from tests.runtimes.conftest import BASE_ENV, WAIT, Collector, Harness, wait_until

pytestmark = pytest.mark.usefixtures("shim")  # the contract: both shims pass it

PRINT_PID_THEN_SLEEP = ["sh", "-c", "echo pid=$$; exec sleep 30"]


def _pid_from(sink: Collector) -> int:
    return int(sink.wait_for_line(lambda t: t.startswith("pid="))[4:])


def _state(pid: int) -> str:
    try:
        return psutil.Process(pid).status()
    except psutil.NoSuchProcess:
        return "gone"


def test_the_shell_runtime_is_a_runtime_adapter(harness: Harness) -> None:
    assert isinstance(harness.runtime, RuntimeAdapter)
    assert isinstance(harness.run(harness.spec("true")), RunHandle)


def test_success_sends_every_line_to_the_sink_and_the_log(
    harness: Harness, sink: Collector
) -> None:
    spec = harness.spec("sh", "-c", "echo one; echo two >&2; printf 'caf\\303\\251\\377 end'")
    outcome = harness.run(spec, sink).wait(WAIT)

    assert outcome is not None
    assert outcome.ok
    assert outcome.exit_code == 0
    assert outcome.failure is None
    # every line has reached the sink by the time the outcome is known
    assert sink.lines() == ["one", "two", "café\ufffd end"]
    assert list(harness.runtime.logs(spec.log_path)) == ["one", "two", "café\ufffd end"]
    status = read_status(status_path_for(spec.log_path))
    assert status is not None
    assert status.exit_code == 0


def test_lines_of_several_mebibytes_arrive_whole(harness: Harness, sink: Collector) -> None:
    script = "import sys\nfor n in (3, 1): sys.stdout.write('word ' * ((n << 20) // 5) + '\\n')"
    spec = harness.spec("python3", "-c", script)
    outcome = harness.run(spec, sink).wait(WAIT)

    assert outcome is not None
    assert outcome.ok
    assert [len(line) for line in sink.lines()] == [5 * ((3 << 20) // 5), 5 * ((1 << 20) // 5)]


def test_a_non_zero_exit_is_a_permanent_exit_failure(harness: Harness) -> None:
    outcome = harness.run(harness.spec("sh", "-c", "echo bad input >&2; exit 3")).wait(WAIT)

    assert outcome is not None
    assert not outcome.ok
    assert outcome.failure == "exit"
    assert outcome.exit_code == 3
    assert not is_transient(outcome.failure)


def test_kill_9_of_the_agent_is_a_transient_crash(harness: Harness, sink: Collector) -> None:
    handle = harness.run(harness.spec(*PRINT_PID_THEN_SLEEP), sink)
    os.kill(_pid_from(sink), signal.SIGKILL)
    outcome = handle.wait(WAIT)

    assert outcome is not None
    assert outcome.failure == "crash"
    assert outcome.signal == signal.SIGKILL
    assert "SIGKILL" in outcome.reason
    assert is_transient(outcome.failure)


def test_an_attempt_that_hangs_past_its_timeout_is_stopped(
    harness: Harness, sink: Collector
) -> None:
    handle = harness.run(harness.spec(*PRINT_PID_THEN_SLEEP, timeout=0.5), sink)
    agent = _pid_from(sink)
    outcome = handle.wait(WAIT)

    assert outcome is not None
    assert outcome.failure == "timeout"
    assert outcome.signal == signal.SIGTERM
    assert is_transient(outcome.failure)
    assert _state(agent) in {"gone", psutil.STATUS_ZOMBIE}


def test_an_attempt_that_ignores_sigterm_at_its_timeout_is_killed_after_the_grace(
    harness: Harness, sink: Collector
) -> None:
    spec = harness.spec("sh", "-c", 'trap "" TERM; echo pid=$$; sleep 30', timeout=0.3)
    handle = harness.run(spec, sink)  # the harness's grace: 0.5 s
    agent = _pid_from(sink)
    outcome = handle.wait(WAIT)

    assert outcome is not None
    assert outcome.failure == "timeout"
    assert outcome.signal == signal.SIGKILL
    assert _state(agent) in {"gone", psutil.STATUS_ZOMBIE}


def test_terminate_stops_a_running_attempt_gracefully(harness: Harness, sink: Collector) -> None:
    handle = harness.run(harness.spec(*PRINT_PID_THEN_SLEEP), sink)
    _pid_from(sink)
    handle.terminate(grace=WAIT * 2)
    outcome = handle.wait(WAIT)  # well before the grace ends: SIGTERM was enough

    assert outcome is not None
    assert outcome.failure == "cancelled"
    assert outcome.signal == signal.SIGTERM


def test_terminate_kills_an_attempt_that_ignores_sigterm(harness: Harness, sink: Collector) -> None:
    spec = harness.spec("sh", "-c", 'trap "" TERM; echo pid=$$; sleep 30; echo survived')
    handle = harness.run(spec, sink)
    agent = _pid_from(sink)
    handle.terminate(grace=0.3, failure="unhealthy")
    outcome = handle.wait(WAIT)

    assert outcome is not None
    assert outcome.failure == "unhealthy"
    assert outcome.signal == signal.SIGKILL
    assert "survived" not in sink.lines()
    assert _state(agent) in {"gone", psutil.STATUS_ZOMBIE}


def test_pause_stops_the_process_tree_and_resume_continues_it(
    harness: Harness, sink: Collector
) -> None:
    handle = harness.run(harness.spec(*PRINT_PID_THEN_SLEEP), sink)
    agent = _pid_from(sink)

    handle.pause()
    wait_until(lambda: _state(agent) == psutil.STATUS_STOPPED)
    assert handle.health().alive  # the shim is not stopped
    handle.resume()
    wait_until(lambda: _state(agent) == psutil.STATUS_SLEEPING)

    handle.terminate(grace=0)
    outcome = handle.wait(WAIT)
    assert outcome is not None
    assert outcome.failure == "cancelled"


def test_time_spent_paused_does_not_count_towards_the_timeout(
    harness: Harness, sink: Collector
) -> None:
    spec = harness.spec(*PRINT_PID_THEN_SLEEP, timeout=1.0)
    handle = harness.run(spec, sink)
    agent = _pid_from(sink)
    handle.pause()
    wait_until(lambda: _state(agent) == psutil.STATUS_STOPPED)
    paused_at = time.monotonic()
    assert handle.wait(1.5) is None  # longer than the timeout, paused: still running
    handle.resume()
    resumed_at = time.monotonic()
    outcome = handle.wait(WAIT)

    assert outcome is not None
    assert outcome.failure == "timeout"
    status = read_status(status_path_for(spec.log_path))
    assert status is not None
    assert status.timed_out
    assert status.ended_at - status.started_at >= 1.0 + (resumed_at - paused_at) - 0.1


def test_terminate_continues_only_what_is_stopped(harness: Harness, sink: Collector) -> None:
    """A running command gets SIGTERM and no SIGCONT (a container engine's client forwards each
    signal it gets to its container, and one forwarded as the container ends fails loudly)."""
    script = 'trap "echo got CONT" CONT; trap "echo got TERM" TERM; echo pid=$$; '
    spec = harness.spec("sh", "-c", script + "while :; do sleep 0.05; done")
    handle = harness.run(spec, sink)
    _pid_from(sink)
    handle.terminate(grace=1.0)
    outcome = handle.wait(WAIT)

    assert outcome is not None
    assert outcome.signal == signal.SIGKILL  # its trap let it live through the grace
    assert "got TERM" in sink.lines()
    assert "got CONT" not in sink.lines()


def test_terminate_reaches_a_paused_attempt(harness: Harness, sink: Collector) -> None:
    handle = harness.run(harness.spec(*PRINT_PID_THEN_SLEEP), sink)
    agent = _pid_from(sink)
    handle.pause()
    wait_until(lambda: _state(agent) == psutil.STATUS_STOPPED)
    handle.terminate(grace=WAIT * 2)
    outcome = handle.wait(WAIT)

    assert outcome is not None
    assert outcome.signal == signal.SIGTERM


def test_the_agent_gets_exactly_its_environment_and_secrets_never_leave(
    harness: Harness, sink: Collector, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setenv("FORGE_TEST_NOT_ALLOWED", "daemon-only")
    secret = "s3cr3t-value-XYZ"  # no known shape: masked because of its variable's name
    env = {**BASE_ENV, "GREETING": "hello", "SERVICE_TOKEN": secret}
    spec = harness.spec("sh", "-c", "env; echo token is $SERVICE_TOKEN", env=env)
    outcome = harness.run(spec, sink).wait(WAIT)

    assert outcome is not None
    assert outcome.ok
    printed = dict(line.split("=", 1) for line in sink.lines() if "=" in line)
    assert set(printed) - {"PWD", "SHLVL", "_"} == set(env)  # sh adds PWD/SHLVL/_ itself
    assert printed["GREETING"] == "hello"
    assert "token is ***" in sink.lines()
    with open(spec.log_path, "rb") as f:
        on_disk = f.read()
    assert secret.encode() not in on_disk
    assert b"token is ***" in on_disk
    assert all(secret not in line for line in harness.runtime.logs(spec.log_path))


def test_a_secret_written_in_pieces_is_masked_on_disk(harness: Harness, sink: Collector) -> None:
    env = {**BASE_ENV, "API_KEY": "abcdef-ghijkl-123"}
    script = "printf %s abcdef-; sleep 0.2; printf '%s\\n' ghijkl-123"
    spec = harness.spec("sh", "-c", script, env=env)
    outcome = harness.run(spec, sink).wait(WAIT)

    assert outcome is not None
    assert outcome.ok
    assert sink.lines() == ["***"]
    with open(spec.log_path, "rb") as f:
        assert f.read() == b"***\n"


def test_background_processes_do_not_outlive_their_attempt(
    harness: Harness, sink: Collector
) -> None:
    outcome = harness.run(harness.spec("sh", "-c", "sleep 30 & echo bg=$!"), sink).wait(WAIT)
    assert outcome is not None
    assert outcome.ok
    background = int(sink.wait_for_line(lambda t: t.startswith("bg="))[3:])
    wait_until(lambda: _state(background) in {"gone", psutil.STATUS_ZOMBIE})


def test_a_missing_binary_is_a_spawn_failure(harness: Harness) -> None:
    outcome = harness.run(harness.spec("forge-no-such-binary", "--flag")).wait(WAIT)

    assert outcome is not None
    assert outcome.failure == "spawn"
    assert "forge-no-such-binary" in outcome.reason
    assert not is_transient(outcome.failure)


def test_a_missing_working_directory_is_a_spawn_failure(harness: Harness) -> None:
    outcome = harness.run(harness.spec("true", cwd="/nonexistent/forge-dir")).wait(WAIT)

    assert outcome is not None
    assert outcome.failure == "spawn"
    assert "/nonexistent/forge-dir" in outcome.reason


def test_the_command_runs_in_its_working_directory(harness: Harness, sink: Collector) -> None:
    outcome = harness.run(harness.spec("pwd", cwd=str(harness.tmp)), sink).wait(WAIT)
    assert outcome is not None
    assert outcome.ok
    assert sink.lines() == [str(harness.tmp)]


def test_a_spec_without_a_command_is_invalid(harness: Harness) -> None:
    outcome = harness.run(harness.spec(command=None)).wait(WAIT)
    assert outcome is not None
    assert outcome.failure == "invalid"


def test_health_and_resource_usage_describe_the_running_tree(
    harness: Harness, sink: Collector
) -> None:
    handle = harness.run(harness.spec(*PRINT_PID_THEN_SLEEP), sink)
    _pid_from(sink)

    health = handle.health()
    usage = handle.resource_usage()
    assert health.alive
    assert health.rss_bytes > 0
    assert health.seconds_since_output >= 0
    assert usage.processes == 1
    assert usage.rss_bytes > 0

    handle.terminate(grace=0)
    assert handle.wait(WAIT) is not None
    assert not handle.health().alive
    assert handle.resource_usage().processes == 0


def test_logs_follow_a_running_attempt_until_it_ends(harness: Harness, sink: Collector) -> None:
    go = harness.tmp / "go"
    script = f"echo first; while [ ! -e {go} ]; do sleep 0.02; done; echo last"
    spec = harness.spec("sh", "-c", script)
    handle = harness.run(spec, sink)

    lines = harness.runtime.logs(spec.log_path, follow=True)
    assert next(lines) == "first"
    go.touch()
    assert list(lines) == ["last"]
    assert handle.wait(WAIT) is not None


def test_logs_of_an_unknown_attempt_raise_not_found(harness: Harness) -> None:
    with pytest.raises(NotFound):
        list(harness.runtime.logs(str(harness.tmp / "nothing.log")))


def test_a_failing_sink_does_not_stop_the_run(harness: Harness) -> None:
    def broken(_notice: object) -> None:
        raise RuntimeError("sink bug")

    handle = harness.runtime.execute(harness.spec("sh", "-c", "echo a; echo b"), broken)
    harness.keep(handle)
    outcome = handle.wait(WAIT)
    assert outcome is not None
    assert outcome.ok


def test_the_shim_survives_the_log_reader_going_away(harness: Harness, sink: Collector) -> None:
    handle = harness.run(harness.spec(*PRINT_PID_THEN_SLEEP), sink)
    _pid_from(sink)
    assert isinstance(handle, ProcessRun)
    handle.detach()
    assert handle.wait(0) is None
    assert psutil.Process(handle.pid).status() != psutil.STATUS_ZOMBIE
    time_left = time.monotonic() + WAIT
    handle.terminate(grace=0)  # still reaches the processes of a detached run
    wait_until(lambda: not handle.health().alive, timeout=time_left - time.monotonic())


def test_an_attempt_whose_shim_is_killed_too_is_a_crash(harness: Harness, sink: Collector) -> None:
    handle = harness.run(harness.spec(*PRINT_PID_THEN_SLEEP), sink)
    agent = _pid_from(sink)
    os.kill(handle.pid, signal.SIGKILL)  # kill -9 of the whole tree: no status file is written
    os.kill(agent, signal.SIGKILL)
    outcome = handle.wait(WAIT)

    assert outcome is not None
    assert outcome.failure == "crash"
    assert "vanished" in outcome.reason
