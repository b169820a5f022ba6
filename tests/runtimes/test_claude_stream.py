"""The stream-json parser over every transcript captured from the real CLI (tests/data/claude)."""

from __future__ import annotations

import json
from datetime import datetime
from pathlib import Path
from zoneinfo import ZoneInfo

import pytest

from actors.runtime import (
    Notice,
    Outcome,
    OutputLine,
    ProgressNotice,
    SessionNotice,
    UsageNotice,
)
from events.redact import forget_secrets, register_secrets
from forge.runtimes.claude_reset import parse_reset_time
from forge.runtimes.claude_stream import (
    ProgressThrottle,
    StreamParser,
    classify_api_error,
)

DATA = Path(__file__).parent.parent / "data" / "claude"


class FakeClock:
    def __init__(self) -> None:
        self.now = 0.0

    def __call__(self) -> float:
        return self.now


def run(
    name: str, exit_code: int | None, signal: int | None = None
) -> tuple[list[Notice], Outcome]:
    parser = StreamParser(throttle=ProgressThrottle(interval=0.0))
    notices: list[Notice] = []
    for line in (DATA / name).read_text().splitlines(keepends=True):
        notices += parser.feed(line)
    notices += parser.flush()
    stderr = DATA / name.replace(".jsonl", ".stderr")
    tail = stderr.read_text() if stderr.exists() else ""
    return notices, parser.finish(exit_code, signal, tail)


# file, exit code, signal, failure (None = ok), cost, one progress summary expected
CASES = [
    ("success_tool_use.jsonl", 0, None, None, 0.0169764, "Bash: ls"),
    ("success_partial_messages.jsonl", 0, None, None, 0.0081582, "The directory contains"),
    ("success_thinking.jsonl", 0, None, None, 0.0083982, "Hello!"),
    ("resume_after_sigterm.jsonl", 0, None, None, 0.0169764, "The directory contains"),
    ("fail_error_max_turns.jsonl", 1, None, "max_turns", 0.0088182, "Bash: ls"),
    ("fail_error_max_budget_usd.jsonl", 1, None, "max_budget", 0.0088182, "I'll list the files."),
    ("fail_http401_invalid_key.jsonl", 1, None, "auth", 0.0, "API retry 1/2"),
    ("fail_not_logged_in.jsonl", 1, None, "auth", 0.0, None),
    ("fail_http429_rate_limit.jsonl", 1, None, "api_error", 0.0, "rate_limit (429)"),
    ("fail_http429_usage_limit_oauth.jsonl", 1, None, "rate_limited", 0.0, None),
    ("fail_http529_overloaded.jsonl", 1, None, "api_error", 0.0, "overloaded (529)"),
    ("fail_http500.jsonl", 1, None, "api_error", 0.0, "server_error (500)"),
    ("fail_http400_invalid_request.jsonl", 1, None, "invalid", 0.0, None),
    ("fail_connection_refused.jsonl", 1, None, "api_error", 0.0, "API retry 1/1: unknown"),
    ("fail_request_timeout.jsonl", 1, None, "api_error", 0.0, None),
    ("fail_resume_not_found.jsonl", 1, None, "invalid", 0.0, None),
    ("interrupted_sigint.jsonl", 0, None, "crash", 0.0088182, "Bash: python3"),
    # killed before a result: the live estimate of its one message (Sonnet 4.5 list prices)
    ("killed_sigterm_exit143.jsonl", None, 15, "crash", 0.0079632, "Bash: python3"),
    ("killed_sigterm_exit143.jsonl", 143, None, "crash", 0.0079632, "Bash: python3"),
    ("fail_http401_default_10_retries_killed_at_170s.partial.jsonl", None, 15, "crash", 0.0, None),
]


@pytest.mark.parametrize(("name", "exit_code", "signal", "failure", "cost", "progress"), CASES)
def test_transcript(
    name: str,
    exit_code: int | None,
    signal: int | None,
    failure: str | None,
    cost: float,
    progress: str | None,
) -> None:
    notices, outcome = run(name, exit_code, signal)
    lines = [json.loads(line) for line in (DATA / name).read_text().splitlines()]
    session_id = lines[-1]["session_id"]

    assert outcome.ok is (failure is None)
    assert outcome.failure == failure
    assert outcome.session_id == session_id
    assert outcome.cost_usd == pytest.approx(cost)
    assert outcome.ok or outcome.reason

    has_init = any(line.get("subtype") == "init" for line in lines)
    sessions = [n for n in notices if isinstance(n, SessionNotice)]
    assert len(sessions) == int(has_init)
    if has_init:
        assert sessions[0].session_id == session_id
        assert sessions[0].model == lines[0]["model"]
        assert "Bash" in sessions[0].tools
    usages = [n for n in notices if isinstance(n, UsageNotice)]
    has_result = lines[-1]["type"] == "result"
    if has_result:  # the result's totals come last and replace any live estimate
        assert usages[-1].cost_usd == pytest.approx(cost)
        assert notices[-1] == usages[-1]
    assert bool(usages) == (has_result or cost > 0)
    if progress is not None:
        summaries = [n.summary for n in notices if isinstance(n, ProgressNotice)]
        assert any(progress in s for s in summaries), summaries


def test_success_outcome_details() -> None:
    _, outcome = run("success_tool_use.jsonl", 0)
    assert outcome.result == "The directory contains a single file, `hello.txt`."
    assert (outcome.input_tokens, outcome.output_tokens) == (3046, 72)
    assert outcome.exit_code == 0


def test_usage_limit_of_a_subscription() -> None:
    _, outcome = run("fail_http429_usage_limit_oauth.jsonl", 1)
    assert outcome.reset_at == 1795568400.0
    assert outcome.reason == "You've hit your 5-hour limit · resets 1am (UTC)"


def test_stderr_lines_in_the_log_explain_a_setup_failure() -> None:
    parser = StreamParser()
    parser.feed("error: unknown option '--bogus-flag'\n")
    outcome = parser.finish(1)
    assert (outcome.failure, outcome.reason) == ("exit", "error: unknown option '--bogus-flag'")


def test_reasons_quote_the_cli() -> None:
    assert run("fail_error_max_turns.jsonl", 1)[1].reason == "Reached maximum number of turns (1)"
    assert run("fail_http401_invalid_key.jsonl", 1)[1].reason.startswith("Invalid API key")
    assert "SIGTERM" in run("killed_sigterm_exit143.jsonl", 143)[1].reason
    assert run("fail_http400_invalid_request.jsonl", 1)[1].reason.startswith("API Error: 400")


@pytest.mark.parametrize(
    "name",
    [
        "fail_unknown_flag.stderr",
        "fail_session_id_in_use.stderr",
        "fail_stream_json_without_verbose.stderr",
    ],
)
def test_setup_errors_have_no_stdout(name: str) -> None:
    parser = StreamParser(session_id="s-1")
    outcome = parser.finish(1, None, (DATA / name).read_text())
    assert outcome.failure == "exit"
    assert outcome.reason == (DATA / name).read_text().strip()
    assert outcome.session_id == "s-1"


def test_noise_and_unknown_lines_are_skipped() -> None:
    parser = StreamParser()
    huge = json.dumps({"type": "user", "message": {"content": "x" * (8 << 20)}, "session_id": "s"})
    assert parser.feed("[SandboxDebug] something\n") == [
        OutputLine(stream="stderr", text="[SandboxDebug] something")
    ]
    for line in [
        "",
        "{not json",
        '{"type": "from_the_future", "payload": {"x": 1}}',
        '{"type": "assistant", "message": {"content": 42}}',
        b"{\xff\xfe",
        huge,
    ]:
        assert parser.feed(line) == []
    assert parser.session_id == "s"


def test_result_key_order_does_not_matter() -> None:
    parser = StreamParser()
    parser.feed('{"is_error": false, "result": "done", "total_cost_usd": 0.5, "type": "result"}')
    assert parser.finish(0).ok


def test_is_error_wins_over_subtype() -> None:
    parser = StreamParser()
    parser.feed(
        '{"type":"result","subtype":"success","is_error":true,"api_error_status":529,'
        '"result":"API Error: 529 Overloaded"}'
    )
    outcome = parser.finish(1)
    assert (outcome.ok, outcome.failure) == (False, "api_error")


def test_progress_is_rate_limited_and_keeps_the_last() -> None:
    clock = FakeClock()
    parser = StreamParser(throttle=ProgressThrottle(interval=1.0, clock=clock))
    out: list[Notice] = []
    for i in range(50):
        clock.now = i * 0.1  # 10 lines a second for 5 seconds
        line = {
            "type": "assistant",
            "message": {"content": [{"type": "text", "text": f"step {i}"}]},
        }
        out += parser.feed(json.dumps(line))
    out += parser.flush()
    summaries = [n.summary for n in out if isinstance(n, ProgressNotice)]
    assert 5 <= len(summaries) <= 7
    assert summaries[0] == "step 0"
    assert summaries[-1] == "step 49"


def test_long_text_is_summarised_and_redacted() -> None:
    register_secrets(["sk-verysecretvalue"])
    try:
        parser = StreamParser(throttle=ProgressThrottle(interval=0.0))
        text = "using sk-verysecretvalue now\n" + "word " * 10_000
        line = {"type": "assistant", "message": {"content": [{"type": "text", "text": text}]}}
        (notice,) = parser.feed(json.dumps(line))
        assert isinstance(notice, ProgressNotice)
        assert len(notice.summary) <= 200
        assert "sk-verysecretvalue" not in notice.summary
    finally:
        forget_secrets()


def test_rate_limit_event_gives_reset_time() -> None:
    parser = StreamParser()
    parser.feed(
        '{"type":"rate_limit_event","rate_limit_info":{"status":"rejected","resetsAt":1700003600,'
        '"rateLimitType":"seven_day"},"uuid":"u","session_id":"s"}'
    )
    parser.feed(
        '{"type":"result","subtype":"success","is_error":true,"api_error_status":429,'
        '"result":"You\'ve hit your limit"}'
    )
    outcome = parser.finish(1)
    assert (outcome.failure, outcome.reset_at) == ("rate_limited", 1700003600.0)


def test_usage_limit_text_gives_reset_time() -> None:
    parser = StreamParser(wall_clock=lambda: 1_755_000_000.0)
    parser.feed(
        '{"type":"result","subtype":"success","is_error":true,'
        '"result":"Claude AI usage limit reached|1755615600"}'
    )
    assert parser.finish(1).reset_at == 1755615600.0


def test_parse_reset_time_forms() -> None:
    zone = ZoneInfo("Asia/Riyadh")
    now = datetime(2026, 4, 15, 12, 0, tzinfo=zone).timestamp()
    text = "You've hit your limit · resets Apr 17, 7pm (Asia/Riyadh)"
    assert parse_reset_time(text, now) == datetime(2026, 4, 17, 19, 0, tzinfo=zone).timestamp()
    later = parse_reset_time("You've hit your session limit · resets 3:45pm", now)
    assert later is not None
    assert 0 < later - now <= 86_400
    weekly = parse_reset_time("You've hit your weekly limit · resets Mon 12:00am", now)
    assert weekly is not None
    assert 0 < weekly - now <= 7 * 86_400
    assert datetime.fromtimestamp(weekly).weekday() == 0
    assert parse_reset_time("API Error: 500 Internal server error", now) is None


@pytest.mark.parametrize(
    ("status", "category", "text", "expected"),
    [
        (429, "rate_limit", "", "api_error"),
        (529, "server_error", "", "api_error"),
        (503, None, "", "api_error"),
        (None, "server_error", "Request timed out.", "api_error"),
        (401, "authentication_failed", "", "auth"),
        (None, "billing_error", "Credit balance is too low", "auth"),
        (400, "unknown", "", "invalid"),
        (None, "model_not_found", "", "invalid"),
    ],
)
def test_classify_api_error(
    status: int | None, category: str | None, text: str, expected: str
) -> None:
    assert classify_api_error(status, category, text) == expected
