"""Input no agent could run, or no reader could bear, is refused at the door in one clear line.

Every case ends in exit 1 (or 2 for a usage error) with one `Error:` line, no traceback, no
`internal error`, and nothing appended to the log.
"""

from __future__ import annotations

from collections.abc import Callable
from pathlib import Path

import pytest
import redis

from actors.runtime import TaskSpec
from forge.runtimes import ShellRuntime
from tests.cli.helpers import completed_task, invoke, log_length, one_error_line

pytestmark = pytest.mark.usefixtures("forge_env")

Args = Callable[[Path], list[str]]


def _tasks(body: str) -> Args:
    """`task submit --file` of a tasks file holding `body` after `[[task]]`."""

    def make(tmp: Path) -> list[str]:
        path = tmp / "tasks.toml"
        path.write_text("[[task]]\n" + body + "\n")
        return ["task", "submit", "--file", str(path)]

    return make


def _config(text: str, *args: str) -> Args:
    """`forge --config FILE ARGS` of a settings file holding `text`."""

    def make(tmp: Path) -> list[str]:
        path = tmp / "config.toml"
        path.write_text(text)
        return ["--config", str(path), *(args or ("task", "list"))]

    return make


def _deep(key: str) -> str:
    return f"{key} = " + "[" * 5000 + "]" * 5000 + "\n"


REFUSED: dict[str, tuple[Args, int, str]] = {
    # -- NUL bytes, anywhere a task holds text
    "a NUL in a command argument": (
        _tasks('command = ["echo", "a\\u0000b"]'),
        1,
        "an argument of the command contains a NUL byte",
    ),
    "a NUL in a command string": (_tasks('command = "echo a\\u0000b"'), 1, "NUL byte"),
    "a NUL in repo": (_tasks('command = "true"\nrepo = "a\\u0000b"'), 1, "repo contains a NUL"),
    "a NUL in cwd": (_tasks('command = "true"\ncwd = "~a\\u0000b"'), 1, "cwd contains a NUL"),
    "a NUL in the prompt": (_tasks('prompt = "fix\\u0000it"'), 1, "prompt contains a NUL"),
    "a NUL in an env value": (
        _tasks('command = "true"\nenv = { A = "x\\u0000" }'),
        1,
        "env A contains a NUL",
    ),
    "a NUL in an env name": (
        _tasks('command = "true"\nenv = { "A\\u0000" = "x" }'),
        1,
        "contains a NUL",
    ),
    "a NUL in a tag": (_tasks('command = "true"\ntags = ["a\\u0000"]'), 1, "contains a NUL"),
    "a NUL from the command line": (
        lambda tmp: ["task", "submit", "-c", "true", "--name", "a\0b"],
        1,
        "name contains a NUL",
    ),
    # -- environment entries
    "an env name with '='": (
        _tasks('command = "true"\nenv = { "A=B" = "x" }'),
        1,
        "env name 'A=B' is empty or contains '='",
    ),
    "an empty env name": (_tasks('command = "true"\nenv = { "" = "x" }'), 1, "is empty"),
    # -- numbers
    "a NaN timeout": (_tasks('command = "true"\ntimeout = nan'), 1, "timeout must be a number"),
    "an infinite timeout": (_tasks('command = "true"\ntimeout = inf'), 1, "(got inf)"),
    "a negative timeout": (_tasks('command = "true"\ntimeout = -1.0'), 1, "(got -1.0)"),
    "an absurd timeout": (_tasks('command = "true"\ntimeout = 1e300'), 1, "(got 1e+300)"),
    "a NaN timeout flag": (
        lambda tmp: ["task", "submit", "-c", "true", "--timeout", "nan"],
        1,
        "timeout must be a number",
    ),
    "a NaN budget": (_tasks('prompt = "x"\nbudget_usd = nan'), 1, "budget_usd must be"),
    "an infinite budget flag": (
        lambda tmp: ["task", "submit", "x", "--budget-usd", "inf"],
        1,
        "budget_usd must be",
    ),
    "a negative budget": (_tasks('prompt = "x"\nbudget_usd = -0.5'), 1, "(got -0.5)"),
    # -- sizes, checked before any parsing
    "a 10 MB command": (
        lambda tmp: ["task", "submit", "-c", "echo " + "x" * 10_000_000],
        1,
        "the limit is 128 KiB",
    ),
    "a 10 MB exec-form command": (
        lambda tmp: ["task", "submit", *["-c", "x" * 100_000] * 100],
        1,
        "the limit is 256 KiB",
    ),
    "a tasks file that never ends": (
        lambda tmp: ["task", "submit", "--file", "/dev/zero"],
        1,
        "over the limit of 16 MiB",
    ),
    "a tasks file nested 5,000 levels": (_tasks(_deep("command")), 1, "nested too deeply"),
    # -- settings
    "connect_timeout = inf": (
        _config("[redis]\nconnect_timeout = inf\n"),
        1,
        "redis.connect_timeout",
    ),
    "a NaN in the config": (_config("[retry]\nbase_delay = nan\n"), 1, "retry.base_delay"),
    "a NUL in the config": (
        _config('[runtime]\nclaude_binary = "a\\u0000"\n'),
        1,
        "contains a NUL byte",
    ),
    "a config nested 5,000 levels": (_config(_deep("x")), 1, "nested too deeply"),
    "a config key with a newline": (
        _config('[redis]\n"a\\nb" = 1\n'),
        1,
        "'a\\nb': unknown setting",
    ),
    "a config file that never ends": (
        lambda tmp: ["--config", "/dev/zero", "task", "list"],
        1,
        "over the limit",
    ),
    # -- moments and files of `events`
    "replay until -1": (lambda tmp: ["events", "replay", "--until", "-1"], 2, "1970 and 9999"),
    "replay until 1e400": (lambda tmp: ["events", "replay", "--until", "1e400"], 2, "1970"),
    "replay until nan": (lambda tmp: ["events", "replay", "--until", "nan"], 2, "1970"),
    "replay until a huge id": (
        lambda tmp: ["events", "replay", "--until", "99999999999999999999999-0"],
        2,
        "below 2**64",
    ),
    "export since year 1": (
        lambda tmp: ["events", "export", "-", "--since", "0001-01-01"],
        2,
        "neither a stream id",
    ),
    "export into a missing directory": (
        lambda tmp: ["events", "export", "/nonexistent/d/f"],
        1,
        "cannot write /nonexistent/d/f: No such file or directory",
    ),
    "export to a full disk": (
        lambda tmp: ["events", "export", "/dev/full"],
        1,
        "cannot write /dev/full: No space left on device",
    ),
    "a batch namespace with a space": (
        lambda tmp: ["run", "--namespace", "a b", "--command", "true"],
        2,
        "is not 1-64 letters",
    ),
    "an id with a newline": (
        lambda tmp: ["task", "show", "a\nb"],
        1,
        "unknown task id 'a\\nb'",
    ),
}


@pytest.mark.parametrize("case", list(REFUSED))
def test_refused_in_one_line_and_nothing_appended(
    case: str, redis_client: redis.Redis, tmp_path: Path
) -> None:
    completed_task(redis_client)
    make_args, code, message = REFUSED[case]
    before = log_length(redis_client)
    result = invoke(make_args(tmp_path))
    assert result.exit_code == code, (result.stdout, result.stderr)
    line = one_error_line(result)
    assert message in line
    assert "internal error" not in line
    assert "Traceback" not in result.stdout
    assert log_length(redis_client) == before


def test_a_nul_in_a_logged_command_fails_the_attempt_not_the_agent(tmp_path: Path) -> None:
    """A task written before validation existed may hold a NUL: its attempt fails for good."""
    spec = TaskSpec(
        task_id="task-old", attempt=1, log_path=str(tmp_path / "a.log"), command=["echo", "a\0b"]
    )
    outcome = ShellRuntime().execute(spec, lambda notice: None).wait(5)
    assert outcome is not None
    assert (outcome.ok, outcome.failure) == (False, "invalid")
    assert "null" in (outcome.reason or "")
