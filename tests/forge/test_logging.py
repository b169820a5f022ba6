"""Logging: JSON lines off a TTY, and no secret ever reaches a log line."""

from __future__ import annotations

import io
import json
import logging
import threading

import structlog

from events.redact import register_secrets
from forge.log import configure_logging, get_logger


def test_json_lines_with_secrets_masked() -> None:
    register_secrets(["canary-value-1234"])
    out = io.StringIO()
    configure_logging("debug", "auto", stream=out)  # StringIO is not a TTY: JSON lines
    log = get_logger("test")
    log.info(
        "connecting to redis://bob:hunter2secret@db:6379 with canary-value-1234",
        api_key="sk-ant-abcdefghijkl",
        url="rediss://:pw-in-url-999@h:1",
        nested={"token": "tok-123456", "count": 3},
        input_tokens=42,
    )
    line = json.loads(out.getvalue().strip())
    text = out.getvalue()
    for secret in (
        "hunter2secret",
        "canary-value-1234",
        "sk-ant-abcdefghijkl",
        "pw-in-url-999",
        "tok-123456",
    ):
        assert secret not in text
    assert line["input_tokens"] == 42
    assert line["nested"]["count"] == 3
    assert line["level"] == "info"
    assert line["component"] == "test"
    structlog.reset_defaults()


def test_level_filters_lower_levels() -> None:
    out = io.StringIO()
    configure_logging("warning", "json", stream=out)
    log = get_logger("test")
    log.info("hidden")
    log.warning("shown")
    lines = out.getvalue().strip().splitlines()
    assert [json.loads(x)["event"] for x in lines] == ["shown"]
    structlog.reset_defaults()


def test_a_failed_thread_and_stdlib_errors_are_json_lines() -> None:
    """What ends a thread, and what pykka reports through the standard library's logging,
    reaches the log as JSON lines like everything else, secrets masked."""
    out = io.StringIO()
    configure_logging("info", "auto", stream=out)
    try:

        def explode() -> None:
            raise RuntimeError("tail went wrong with sk-ant-api03-threadsecret-0123456789")

        thread = threading.Thread(target=explode, name="forge-tail")
        thread.start()
        thread.join()
        try:
            raise ValueError("actor failed")
        except ValueError:
            logging.getLogger("pykka").error("Unhandled exception in Orchestrator:", exc_info=True)
    finally:
        threading.excepthook = threading.__excepthook__
        for handler in list(logging.getLogger().handlers):
            logging.getLogger().removeHandler(handler)
        structlog.reset_defaults()
    lines = [json.loads(line) for line in out.getvalue().splitlines()]
    assert [(x["event"], x["level"]) for x in lines] == [
        ("thread failed", "error"),
        ("Unhandled exception in Orchestrator:", "error"),
    ]
    assert lines[0]["thread"] == "forge-tail"
    assert "RuntimeError: tail went wrong" in lines[0]["exception"]
    assert "threadsecret" not in out.getvalue()
    assert "ValueError: actor failed" in lines[1]["exception"]
