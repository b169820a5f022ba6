"""The Claude Code runtime driving the REAL claude binary against the mock Anthropic API.

Each test starts its own mock on 127.0.0.1, points `ANTHROPIC_BASE_URL` at it and runs the
binary (from PATH or the claude-agent-sdk wheel) in an isolated HOME, with the CLI's own retries
cut to one so that error scenarios end in about a second.
"""

from __future__ import annotations

import shutil
import signal
import tempfile
import threading
import time
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import psutil
import pytest

from actors.runtime import (
    Notice,
    Outcome,
    ProgressNotice,
    RunHandle,
    SessionNotice,
    TaskSpec,
    UsageNotice,
    is_transient,
)
from forge.runtimes.claude import ClaudeRuntime
from forge.runtimes.claude_command import bundled_binary
from tests.mock_anthropic import (
    DEFAULT_MODEL,
    ApiError,
    Hang,
    MockAnthropic,
    Reply,
    Text,
    ToolUse,
    Usage,
)

API_KEY = "sk-ant-api03-forge-test-key-0123456789"
SESSION = "5f0e4f6c-2d1b-4a57-9d7e-3f43b2a7c001"
BINARY = shutil.which("claude") or bundled_binary()

pytestmark = pytest.mark.skipif(
    BINARY is None, reason="no claude binary (install forge[claude] or put claude on PATH)"
)


class Collector:
    """The sink: keeps notices and lets a test wait for one."""

    def __init__(self) -> None:
        self.notices: list[Notice] = []
        self._cond = threading.Condition()

    def __call__(self, notice: Notice) -> None:
        with self._cond:
            self.notices.append(notice)
            self._cond.notify_all()

    def wait_for(self, predicate: Callable[[Notice], bool], timeout: float = 30.0) -> Notice:
        with self._cond:
            found: list[Notice] = []

            def seen() -> bool:
                found[:] = [n for n in self.notices if predicate(n)]
                return bool(found)

            assert self._cond.wait_for(seen, timeout), f"no such notice in {self.notices}"
            return found[0]

    def of(self, kind: type[Any]) -> list[Any]:
        with self._cond:
            return [n for n in self.notices if isinstance(n, kind)]

    def summaries(self) -> str:
        return "\n".join(n.summary for n in self.of(ProgressNotice))


def wait_until(predicate: Callable[[], bool], timeout: float = 30.0) -> None:
    """Poll a condition nothing signals (a file another process creates), with a deadline."""
    tick = threading.Event()
    for _ in range(int(timeout / 0.02)):
        if predicate():
            return
        tick.wait(0.02)
    raise AssertionError(f"condition not met within {timeout} s")


class Harness:
    def __init__(self, mock: MockAnthropic, home: Path, work: Path, logs: Path) -> None:
        self.mock = mock
        self.home = home
        self.work = work
        self.logs = logs
        self.environ = {
            "ANTHROPIC_API_KEY": API_KEY,
            "ANTHROPIC_BASE_URL": mock.url,
            "CLAUDE_CODE_MAX_RETRIES": "1",
            "CLAUDE_CODE_DISABLE_NONESSENTIAL_TRAFFIC": "1",
            "DISABLE_TELEMETRY": "1",
            "CLAUDECODE": "1",  # as if Forge itself ran under Claude Code: must be stripped
            "UNRELATED_SECRET_TOKEN": "never-passed-on",
        }
        self.handles: list[RunHandle] = []

    def run(
        self,
        *replies: Reply,
        wait: bool = True,
        environ: dict[str, str] | None = None,
        **fields: Any,
    ) -> tuple[RunHandle, Collector, Outcome | None]:
        self.mock.script(*replies)
        runtime = ClaudeRuntime(
            BINARY,
            default_model=DEFAULT_MODEL,
            environ=environ or self.environ,
            progress_interval=0.0,
            kill_grace=2.0,
        )
        attempt = len(self.handles) + 1
        spec = TaskSpec(
            **{
                "task_id": "t1",
                "attempt": attempt,
                "log_path": str(self.logs / f"attempt-{attempt}.log"),
                "prompt": "Make a file",
                "cwd": str(self.work),
                "env": {"PATH": "/usr/bin:/bin", "HOME": str(self.home)},
                "session_id": SESSION,
                **fields,
            }
        )
        sink = Collector()
        handle = runtime.execute(spec, sink)
        self.handles.append(handle)
        outcome = handle.wait(timeout=60) if wait else None
        if wait:
            assert outcome is not None, "the attempt did not end within 60 s"
            self.check_no_secret(sink, outcome, attempt)
        return handle, sink, outcome

    def check_no_secret(self, sink: Collector, outcome: Outcome, attempt: int) -> None:
        log = (self.logs / f"attempt-{attempt}.log").read_text()
        for text in (log, repr(sink.notices), repr(outcome)):
            assert API_KEY not in text


@pytest.fixture
def harness(tmp_path: Path) -> Iterator[Harness]:
    home = Path(tempfile.mkdtemp(prefix="fch", dir="/tmp"))
    work = tmp_path / "work"
    work.mkdir()
    with MockAnthropic() as mock:
        h = Harness(mock, home, work, tmp_path / "logs")
        try:
            yield h
        finally:
            for handle in h.handles:
                handle.terminate(grace=0)
                handle.wait(timeout=10)
    shutil.rmtree(home, ignore_errors=True)


def test_success_with_a_tool_call_that_runs_in_the_working_dir(harness: Harness) -> None:
    _, sink, outcome = harness.run(
        ToolUse("Bash", {"command": "echo made > made.txt", "description": "make"}, text="On it."),
        Text("I made made.txt."),
        allowed_tools=["Bash"],
    )
    assert outcome is not None
    assert (outcome.ok, outcome.failure, outcome.exit_code) == (True, None, 0)
    assert outcome.result == "I made made.txt."
    assert outcome.session_id == SESSION
    assert outcome.cost_usd > 0
    assert outcome.input_tokens > 0
    assert (harness.work / "made.txt").read_text() == "made\n"

    (session,) = sink.of(SessionNotice)
    assert (session.session_id, session.model) == (SESSION, DEFAULT_MODEL)
    assert "Bash" in session.tools
    assert "Bash: echo made > made.txt" in sink.summaries()
    *live, usage = sink.of(UsageNotice)  # live estimates while it ran, the CLI's total last
    assert live
    assert usage.cost_usd == pytest.approx(outcome.cost_usd)

    first, second = harness.mock.turns
    assert first.body["messages"][0]["content"][-1]["text"] == "Make a file"
    results = [b for b in second.body["messages"][-1]["content"] if b["type"] == "tool_result"]
    assert results
    assert "x-api-key" not in first.headers


def test_plain_text_answer(harness: Harness) -> None:
    _, sink, outcome = harness.run(Text("Hello from the mock."), prompt="-say hello")
    assert outcome is not None
    assert outcome.ok
    assert outcome.result == "Hello from the mock."
    assert "Hello from the mock." in sink.summaries()
    (turn,) = harness.mock.turns
    assert turn.body["messages"][0]["content"][-1]["text"] == "-say hello"
    assert turn.body["model"] == DEFAULT_MODEL


@pytest.mark.parametrize(
    ("error", "failure", "reason"),
    [
        (ApiError.rate_limited(retry_after=0), "api_error", "429"),
        (ApiError.overloaded(), "api_error", "529"),
        (ApiError.server_error(), "api_error", "500"),
        (ApiError.unauthorized(), "auth", "Invalid API key"),
    ],
)
def test_api_errors_after_the_cli_retries(
    harness: Harness, error: ApiError, failure: str, reason: str
) -> None:
    _, sink, outcome = harness.run(error, error)
    assert outcome is not None
    assert (outcome.ok, outcome.failure, outcome.exit_code) == (False, failure, 1)
    assert reason in outcome.reason
    assert is_transient(outcome.failure) is (failure == "api_error")  # what the breaker counts
    assert outcome.session_id == SESSION
    assert outcome.cost_usd == 0
    assert f"API retry 1/1: {error.status}" in sink.summaries() or f"({error.status})" in (
        sink.summaries()
    )
    assert len(harness.mock.turns) == 2  # the first try and the CLI's one retry


def test_retry_after_is_honoured_and_a_retry_can_succeed(harness: Harness) -> None:
    _, sink, outcome = harness.run(ApiError.rate_limited(retry_after=1), Text("Second time lucky."))
    assert outcome is not None
    assert outcome.ok
    first, second = harness.mock.turns
    assert second.at - first.at >= 1.0
    assert "rate_limit (429)" in sink.summaries()


def test_bad_request_is_invalid(harness: Harness) -> None:
    harness.mock.default = ApiError.bad_request("model: nope is not a valid model")
    _, _, outcome = harness.run()
    assert outcome is not None
    assert (outcome.failure, outcome.reason) == (
        "invalid",
        "API Error: 400 model: nope is not a valid model",
    )
    # 2.1.331 tries a 400 again without some of its beta headers (a gateway may reject them)
    first, *retries = [set(t.headers["anthropic-beta"].split(",")) for t in harness.mock.turns]
    assert all(betas < first for betas in retries)


def test_subscription_usage_limit_opens_until_the_reset(harness: Harness) -> None:
    environ = {k: v for k, v in harness.environ.items() if k != "ANTHROPIC_API_KEY"}
    environ["CLAUDE_CODE_OAUTH_TOKEN"] = "sk-ant-oat01-forge-test-oauth-token"
    # Always in the future, whatever day the suite runs: the CLI ignores a reset in the past.
    reset = (int(time.time()) // 3600 + 3) * 3600
    limited = ApiError(
        429,
        "rate_limit_error",
        "Rate limited",
        headers={
            "anthropic-ratelimit-unified-status": "rejected",
            "anthropic-ratelimit-unified-reset": str(reset),
            "anthropic-ratelimit-unified-representative-claim": "five_hour",
            "x-should-retry": "false",
        },
    )
    _, _, outcome = harness.run(limited, environ=environ)
    assert outcome is not None
    assert (outcome.failure, outcome.reset_at) == ("rate_limited", float(reset))
    assert "limit" in outcome.reason
    assert "sk-ant-oat01" not in (harness.logs / "attempt-1.log").read_text()


def test_hanging_request_times_out_in_the_cli(harness: Harness) -> None:
    environ = {**harness.environ, "API_TIMEOUT_MS": "1500", "CLAUDE_CODE_MAX_RETRIES": "0"}
    _, _, outcome = harness.run(Hang(), environ=environ)
    assert outcome is not None
    assert outcome.failure == "api_error"
    assert "timed out" in outcome.reason


def test_hanging_request_hits_the_task_timeout(harness: Harness) -> None:
    _, _, outcome = harness.run(Hang(), timeout=3.0)
    assert outcome is not None
    assert outcome.failure == "timeout"
    assert outcome.session_id == SESSION


def test_max_turns(harness: Harness) -> None:
    _, _, outcome = harness.run(
        ToolUse("Bash", {"command": "true"}),
        Text("never asked"),
        allowed_tools=["Bash"],
        max_turns=1,
    )
    assert outcome is not None
    assert (outcome.failure, outcome.reason) == ("max_turns", "Reached maximum number of turns (1)")
    assert outcome.cost_usd > 0


def test_max_budget(harness: Harness) -> None:
    costly = Usage(input_tokens=200_000, output_tokens=2_000)
    _, _, outcome = harness.run(
        ToolUse("Bash", {"command": "true"}, usage=costly),
        Text("never asked"),
        allowed_tools=["Bash"],
        budget_usd=0.01,
    )
    assert outcome is not None
    assert outcome.failure == "max_budget"
    assert outcome.cost_usd > 0.01
    assert "budget" in outcome.reason


def test_killed_mid_tool_then_resumed(harness: Harness) -> None:
    sleeper = ToolUse(
        "Bash", {"command": "touch started && sleep 60", "description": "long job"}, text="Working."
    )
    handle, sink, _ = harness.run(sleeper, allowed_tools=["Bash"], wait=False)
    sink.wait_for(lambda n: isinstance(n, ProgressNotice) and "sleep 60" in n.summary)
    wait_until((harness.work / "started").exists)  # the tool is running
    (claude,) = psutil.Process(handle.pid).children()  # the shim's one child
    claude.send_signal(signal.SIGTERM)  # the agent dies (it was not Forge that stopped it)
    died = handle.wait(timeout=30)
    assert died is not None
    assert (died.ok, died.failure) == (False, "crash")
    assert died.session_id == SESSION

    _, sink2, outcome = harness.run(
        Text("Picked up where I left off."), prompt="Please continue", resume=True
    )
    assert outcome is not None
    assert outcome.ok, outcome.reason
    assert outcome.session_id == SESSION
    (session,) = sink2.of(SessionNotice)
    assert session.session_id == SESSION
    resumed = harness.mock.turns[-1].body["messages"]
    texts = repr(resumed)
    assert "Make a file" in texts  # the first attempt's prompt
    assert "sleep 60" in texts  # its tool call
    assert any(
        block.get("type") == "tool_result"
        for message in resumed
        if isinstance(message["content"], list)
        for block in message["content"]
    )
    assert "Please continue" in texts
