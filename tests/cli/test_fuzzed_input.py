"""Hypothesis-generated bad input for the CLI, settings files and tasks files.

Whatever comes in, `forge` ends with exit 0, 1 or 2, prints at most one `Error:` line (exactly
one line on stderr for exit 1), never a traceback nor an `internal error`, and leaves the log
readable: `forge task list` still works and the log still verifies.
"""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path

import pytest
import redis
from click.testing import Result
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from tests.cli.helpers import completed_task, invoke
from tests.strategies import cli_arguments, config_files, tasks_files

pytestmark = pytest.mark.usefixtures("forge_env")

FUZZ = settings(
    max_examples=60,
    deadline=None,
    suppress_health_check=[HealthCheck.function_scoped_fixture, HealthCheck.too_slow],
)


@pytest.fixture
def client(forge_env: dict[str, str], redis_client: redis.Redis) -> Iterator[redis.Redis]:
    """The session server with one finished task in the log; at the end, the log verifies."""
    completed_task(redis_client)
    yield redis_client
    verify = invoke(["events", "verify"])
    assert verify.exit_code == 0, verify.stdout


def _ended_cleanly(result: Result) -> None:
    assert result.exit_code in (0, 1, 2), (result.exit_code, result.stderr)
    assert "Traceback" not in result.stdout + result.stderr
    errors = [line for line in result.stderr.splitlines() if line.startswith("Error:")]
    # exit 1 with no error line is a verdict (`daemon status`: none runs; `events verify`)
    assert len(errors) == (0 if result.exit_code == 0 else len(errors[:1])), result.stderr
    assert result.exit_code != 2 or errors, result.stderr
    assert "internal error" not in result.stderr, result.stderr
    if result.exit_code == 1:
        assert result.stderr.count("\n") <= 1, result.stderr


def _log_readable() -> None:
    listed = invoke(["task", "list", "--json"])
    assert listed.exit_code == 0, listed.stderr


@FUZZ
@given(args=cli_arguments())
def test_any_arguments_end_in_one_line(client: redis.Redis, args: list[str]) -> None:
    _ended_cleanly(invoke(args, stdin=""))
    _log_readable()


@FUZZ
@given(content=tasks_files)
def test_any_tasks_file_ends_in_one_line(
    client: redis.Redis, tmp_path: Path, content: bytes
) -> None:
    path = tmp_path / "tasks.toml"
    path.write_bytes(content)
    _ended_cleanly(invoke(["task", "submit", "--file", str(path)]))
    _log_readable()


@FUZZ
@given(content=config_files, command=st.sampled_from([["task", "list"], ["config", "show"]]))
def test_any_settings_file_ends_in_one_line(
    client: redis.Redis, tmp_path: Path, content: bytes, command: list[str]
) -> None:
    path = tmp_path / "config.toml"
    path.write_bytes(content)
    validated = invoke(["config", "validate", str(path)])
    assert validated.exit_code in (0, 1), validated.stderr
    assert "Traceback" not in validated.stdout + validated.stderr
    _ended_cleanly(invoke(["--config", str(path), *command]))
    _log_readable()
