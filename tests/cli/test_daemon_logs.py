"""`forge daemon logs`: the daemon's JSON log lines as console lines, or as written."""

from __future__ import annotations

import io
import json
from collections.abc import Iterator
from pathlib import Path

import click
import pytest

from events.redact import register_secrets
from forge.cli.daemon_log_view import render_log_line
from forge.log import configure_logging, get_logger
from tests.cli.helpers import invoke, one_error_line


def _real_log_lines(secret: str) -> list[str]:
    """Lines written by Forge's own logging configuration, as the daemon writes them."""
    out = io.StringIO()
    configure_logging("info", "json", out)
    try:
        log = get_logger("forge.daemon", node_id="host-1a2b")
        log.info("daemon started", pid=4242, epoch=3, namespace="forge")
        log.warning("snapshot unusable, ignored", position="1-0", reason="bad checksum")
        try:
            raise ValueError("boom")
        except ValueError:
            log.error("thread failed", thread="tail", exc_info=True)
        log.info("agent env", url=f"redis://user:{secret}@host:6379/0")
    finally:
        configure_logging("info", "json")
    return out.getvalue().splitlines()


@pytest.fixture
def daemon_log(forge_env: dict[str, str]) -> Iterator[Path]:
    path = Path(forge_env["FORGE_HOME"]) / "daemon.log"
    lines = ["Fatal Python error: before logging was set up", *_real_log_lines("hunter2-secret")]
    path.write_text("\n".join(lines) + "\n")
    yield path
    path.unlink()


def test_a_log_line_reads_as_time_level_component_event_and_pairs() -> None:
    started, warning, failed, _ = (render_log_line(x) for x in _real_log_lines("s3cret-value"))
    (line,) = started
    stamp, level, component, event = line[:23], line[24:31], line[32:56], line[57:]
    assert stamp[:4].isdigit()
    assert stamp[10] == " "
    assert (level, component.rstrip()) == ("info   ", "forge.daemon")
    assert event == "daemon started  node_id=host-1a2b pid=4242 epoch=3 namespace=forge"
    assert warning[0].endswith(
        'snapshot unusable, ignored  node_id=host-1a2b position=1-0 reason="bad checksum"'
    )
    assert failed[0].split()[2:5] == ["error", "forge.daemon", "thread"]
    assert failed[1] == "    Traceback (most recent call last):"
    assert failed[-1] == "    ValueError: boom"


def test_text_that_is_not_a_json_object_is_shown_as_it_is() -> None:
    assert render_log_line("plain words") == ["plain words"]
    assert render_log_line("[1, 2]") == ["[1, 2]"]
    assert render_log_line("{broken") == ["{broken"]


def test_secrets_are_masked_again() -> None:
    register_secrets(["hunter2-secret"])
    line = json.dumps({"event": "x", "level": "info", "token": "abc", "note": "hunter2-secret"})
    (out,) = render_log_line(line)
    assert "hunter2-secret" not in out
    assert "token=***" in out


def test_not_a_terminal_keeps_the_json_lines(daemon_log: Path) -> None:
    result = invoke(["daemon", "logs", "-n", "3"])
    assert result.exit_code == 0, result.stderr
    lines = result.stdout.splitlines()
    assert [json.loads(line)["event"] for line in lines] == [
        "snapshot unusable, ignored",
        "thread failed",
        "agent env",
    ]
    assert "hunter2-secret" not in result.stdout  # masked when it was written
    assert invoke(["daemon", "logs", "-n", "3", "--json"]).stdout == result.stdout


def test_console_renders_every_line(daemon_log: Path) -> None:
    result = invoke(["daemon", "logs", "--console"])
    assert result.exit_code == 0, result.stderr
    lines = result.stdout.splitlines()
    assert lines[0] == "Fatal Python error: before logging was set up"
    assert (
        " info    forge.daemon             daemon started  node_id=host-1a2b pid=4242" in (lines[1])
    )
    assert lines[-1].endswith("agent env  node_id=host-1a2b url=redis://user:***@host:6379/0")
    assert not any(line.startswith("{") for line in lines)


def test_raw_and_console_together_is_a_usage_error(daemon_log: Path) -> None:
    result = invoke(["daemon", "logs", "--raw", "--console"])
    assert result.exit_code == 2
    assert "not both" in one_error_line(result)


def test_a_terminal_gets_console_lines_unless_raw_is_asked(
    daemon_log: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setattr("forge.cli.daemon_cmd.is_tty", lambda: True)
    console = invoke(["daemon", "logs", "-n", "1"]).stdout
    assert "agent env" in click.unstyle(console)
    assert not console.startswith("{")
    raw = invoke(["daemon", "logs", "-n", "1", "--raw"]).stdout
    assert json.loads(raw)["event"] == "agent env"
