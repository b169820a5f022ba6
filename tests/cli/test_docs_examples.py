"""The examples of docs/cli.md, submitted as written, so that the page cannot rot."""

from __future__ import annotations

import re
import shlex
import subprocess
from pathlib import Path

import pytest
import redis

from events.replay import replay
from tests.cli.helpers import invoke, store_of

pytestmark = pytest.mark.usefixtures("forge_env")

DOC = (Path(__file__).resolve().parent.parent.parent / "docs" / "cli.md").read_text()


def _submitted_command(args: list[str], client: redis.Redis) -> list[str] | None:
    result = invoke(["task", "submit", *args])
    assert result.exit_code == 0, (args, result.stderr)
    state, _ = replay(store_of(client))
    return state.tasks[result.stdout.strip()].definition.command


def test_the_command_forms_of_the_docs(redis_client: redis.Redis) -> None:
    shell = re.search(r"\(`--command \"([^\"]+)\"`\)", DOC.replace("\n", " "))
    assert shell is not None, "the shell-form example moved"
    assert _submitted_command(["--command", shell[1]], redis_client) == ["/bin/sh", "-c", shell[1]]
    exec_form = re.search(r"\(`(-c printf[^`]*)`\)", DOC.replace("\n", " "))
    assert exec_form is not None, "the exec-form example moved"
    argv = shlex.split(exec_form[1])
    assert _submitted_command(argv, redis_client) == ["printf", "%s\\n", "a b"]


def test_the_tasks_file_of_the_docs(redis_client: redis.Redis, tmp_path: Path) -> None:
    section = DOC.split("### The tasks file", 1)[1]
    block = re.search(r"```toml\n(.*?)```", section, re.DOTALL)
    assert block is not None, "the tasks file example moved"
    subprocess.run(["git", "init", "-q", str(tmp_path)], check=True)  # `repo = "."`: a checkout
    path = tmp_path / "tasks.toml"
    path.write_text(block[1])
    result = invoke(["task", "submit", "--file", str(path)])
    assert result.exit_code == 0, result.stderr
    build, test, review = result.stdout.split()
    tasks = replay(store_of(redis_client))[0].tasks
    assert tasks[build].definition.command == ["/bin/sh", "-c", "make build"]
    assert tasks[test].definition.command == ["pytest", "-q", "tests/unit tests"]
    assert tasks[test].definition.after == (build,)
    assert (tasks[review].definition.runtime, tasks[review].definition.after) == ("claude", (test,))
    assert tasks[review].definition.repo == str(tmp_path)
