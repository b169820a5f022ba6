"""The pieces around ProcessRun: outcome classification, masking, hooks, registry, no-op."""

from __future__ import annotations

import os
import signal

import pytest
from hypothesis import given
from hypothesis import strategies as st

from actors.runtime import OutputLine, ProgressNotice, RunHandle, RuntimeAdapter, TaskSpec
from forge.errors import ForgeError
from forge.runtimes import (
    ExitStatus,
    NoopRuntime,
    ProcessRun,
    ShellRuntime,
    UnknownRuntime,
    available_runtimes,
    default_outcome,
    get_runtime,
    register_runtime,
    secret_env_names,
)
from forge.runtimes.shim_masking import Masker
from tests.runtimes.conftest import BASE_ENV, WAIT, Collector, Harness


@pytest.mark.parametrize(
    ("status", "requested", "ok", "failure"),
    [
        (ExitStatus(exit_code=0), None, True, None),
        (ExitStatus(exit_code=2), None, False, "exit"),
        (ExitStatus(signal=signal.SIGKILL), None, False, "crash"),
        (ExitStatus(signal=signal.SIGTERM, timed_out=True), None, False, "timeout"),
        (ExitStatus(signal=signal.SIGTERM), "cancelled", False, "cancelled"),
        (ExitStatus(spawn_error="cannot start 'x'"), "cancelled", False, "spawn"),
        (None, None, False, "crash"),
        (None, "unhealthy", False, "unhealthy"),
    ],
)
def test_default_outcome_classifies_every_ending(
    status: ExitStatus | None, requested: str | None, ok: bool, failure: str | None
) -> None:
    outcome = default_outcome(status, requested)  # type: ignore[arg-type]
    assert outcome.ok is ok
    assert outcome.failure == failure


SECRETS = ["abcdef", "abcabcabd", "tok-123456789"]


@given(
    st.lists(st.text(alphabet="abcdt-1234567xyz\n", max_size=40).map(str.encode), max_size=20).map(
        lambda parts: [*parts, SECRETS[0].encode()]
    )
)
def test_masking_does_not_depend_on_how_the_stream_is_cut(parts: list[bytes]) -> None:
    whole = b"".join(parts)
    masker = Masker([s.encode() for s in SECRETS])
    streamed = b"".join(masker.feed(part) for part in parts) + masker.flush()
    reference = Masker([s.encode() for s in SECRETS])
    assert streamed == reference.feed(whole) + reference.flush()
    assert all(s.encode() not in streamed for s in SECRETS)


def test_secret_env_names_picks_secret_names_and_shapes() -> None:
    env = {"PATH": "/bin", "GITHUB_TOKEN": "x" * 8, "NOTE": "sk-ant-abcdefghijkl", "HOME": "/"}
    assert secret_env_names(env) == ["GITHUB_TOKEN", "NOTE"]


def test_a_custom_line_handler_sees_redacted_lines(harness: Harness, sink: Collector) -> None:
    seen: list[str] = []

    def handler(line: str) -> list[ProgressNotice | OutputLine]:
        seen.append(line)
        return [ProgressNotice(summary=f"said {line}")]

    spec = harness.spec("sh", "-c", "echo password=hunter2hunter2")
    run = ProcessRun.start(
        spec.command or [], log_path=spec.log_path, sink=sink, env=BASE_ENV, line_handler=handler
    )
    harness.keep(run)
    outcome = run.wait(WAIT)

    assert outcome is not None
    assert outcome.ok
    assert seen == ["password=***"]
    assert sink.notices == [ProgressNotice(summary="said password=***")]


def test_the_registry_knows_the_shell_and_noop_runtimes() -> None:
    assert isinstance(get_runtime("shell"), ShellRuntime)
    assert isinstance(get_runtime("noop"), NoopRuntime)
    assert {"noop", "shell"} <= set(available_runtimes())


def test_an_unknown_runtime_is_a_forge_error_naming_the_known_ones() -> None:
    with pytest.raises(UnknownRuntime, match=r"unknown runtime 'nope' \(known runtimes: .*shell"):
        get_runtime("nope")
    assert issubclass(UnknownRuntime, ForgeError)


def test_a_runtime_can_be_registered() -> None:
    register_runtime("test-noop", NoopRuntime)
    assert isinstance(get_runtime("test-noop"), NoopRuntime)


def test_the_noop_runtime_completes_at_once_in_process(tmp_path: object) -> None:
    runtime = NoopRuntime()
    sink = Collector()
    spec = TaskSpec(task_id="t", attempt=1, log_path=f"{tmp_path}/n.log")
    handle = runtime.execute(spec, sink)

    assert isinstance(runtime, RuntimeAdapter)
    assert isinstance(handle, RunHandle)
    outcome = handle.wait(0)
    assert outcome is not None
    assert outcome.ok
    assert handle.pid == os.getpid()
    assert not handle.health().alive
    assert runtime.adopt(spec, handle.pid, handle.create_time, sink) is None
    assert list(runtime.logs(spec.log_path)) == []
    assert sink.notices == []
