"""Isolation options through the CLI, tasks files and settings: what is recorded in the task's
definition (resolved at submit), what `forge task show` says, and bad input refused in one line.
No root needed: nothing runs."""

from __future__ import annotations

from pathlib import Path

import pytest
import redis

from events import types as t
from events.event_base import Limits
from forge.errors import InvalidTask
from forge.isolation import parse_memory
from forge.runtimes.isolation import api_target
from tests.cli.helpers import invoke, log_length, one_error_line, store_of

pytestmark = pytest.mark.usefixtures("forge_env")


def _definitions(client: redis.Redis) -> dict[str, t.TaskDefinition]:
    return {
        e.event.spec.name or e.event.task_id: e.event.spec
        for e in store_of(client).read_range()
        if isinstance(e.event, t.TaskSubmitted)
    }


@pytest.mark.parametrize(
    ("text", "mb"),
    [("512M", 512), ("2G", 2048), ("1.5g", 1536), ("65536k", 64), ("512MiB", 512), ("100", 100)],
)
def test_memory_sizes(text: str, mb: int) -> None:
    assert parse_memory(text) == mb


@pytest.mark.parametrize("text", ["", "lots", "-5M", "1M", "5X", "inf", "1e9M", "9" * 50])
def test_bad_memory_sizes_are_refused(text: str) -> None:
    with pytest.raises(InvalidTask):
        parse_memory(text)


def test_flags_files_and_settings_defaults_are_recorded(
    redis_client: redis.Redis, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    flags = ["--sandbox", "--network", "off", "--memory", "512M", "--cpus", "0.5", "--pids", "256"]
    done = invoke(["task", "submit", "-c", "true", "--name", "flags", *flags])
    assert done.exit_code == 0, done.stderr
    assert invoke(["task", "submit", "-c", "true", "--name", "plain"]).exit_code == 0
    tasks = tmp_path / "tasks.toml"
    tasks.write_text(
        '[defaults]\nsandbox = true\nmemory = "1G"\n\n'
        '[[task]]\nname = "file"\ncommand = "true"\nnetwork = "api"\npids = 64\n\n'
        '[[task]]\nname = "unsandboxed"\ncommand = "true"\nsandbox = false\n'
    )
    assert invoke(["task", "submit", "--file", str(tasks)]).exit_code == 0
    monkeypatch.setenv("FORGE_ISOLATION_SANDBOX", "true")
    monkeypatch.setenv("FORGE_ISOLATION_MEMORY", "256M")
    monkeypatch.setenv("FORGE_ISOLATION_NETWORK", "off")
    assert invoke(["task", "submit", "-c", "true", "--name", "settings"]).exit_code == 0
    done = invoke(["task", "submit", "-c", "true", "--name", "opted-out", "--no-sandbox"])
    assert done.exit_code == 0
    assert (
        invoke(["task", "submit", "-c", "true", "--name", "noop", "--runtime", "noop"]).exit_code
        == 0
    )

    d = _definitions(redis_client)
    assert (d["flags"].sandbox, d["flags"].network) == (True, "off")
    assert d["flags"].limits == Limits(memory_mb=512, cpus=0.5, pids=256)
    assert (d["plain"].sandbox, d["plain"].network, d["plain"].limits) == (False, None, None)
    assert (d["file"].sandbox, d["file"].network) == (True, "api")
    assert d["file"].limits == Limits(memory_mb=1024, pids=64)
    assert (d["unsandboxed"].sandbox, d["unsandboxed"].network) == (False, None)
    assert (d["settings"].sandbox, d["settings"].network) == (True, "off")
    assert d["settings"].limits == Limits(memory_mb=256)
    assert d["opted-out"].sandbox is False
    assert d["opted-out"].limits == Limits(memory_mb=256)
    # a runtime that cannot honour the defaults does not get them
    assert (d["noop"].sandbox, d["noop"].limits) == (False, None)


def test_task_show_names_the_sandbox_and_the_limits(redis_client: redis.Redis) -> None:
    flags = ["--sandbox", "--network", "api", "--memory", "2G", "--pids", "100"]
    done = invoke(["task", "submit", "-c", "true", *flags])
    task_id = done.stdout.strip()
    shown = invoke(["task", "show", task_id]).stdout
    assert "sandbox: bubblewrap   network: api (the model API's host and port only)" in shown
    assert "limits: memory 2048 MiB, pids 100" in shown


@pytest.mark.parametrize(
    ("args", "message"),
    [
        (["--memory", "lots"], "memory 'lots' is not a size"),
        (["--memory", "1M"], "is not between 4M and 1P"),
        (["--cpus", "0"], "cpus must be a number > 0"),
        (["--cpus", "nan"], "cpus must be a number > 0"),
        (["--pids", "0"], "pids must be between 1 and"),
        (["--sandbox", "--network", "sometimes"], "unknown network 'sometimes'"),
        (["--network", "off"], "--network applies to sandboxed tasks"),
        (["--runtime", "noop", "--sandbox"], "the sandbox applies to the shell and claude"),
        (["--runtime", "noop", "--memory", "1G"], "limits (memory, cpus, pids) apply to"),
    ],
)
def test_bad_input_is_refused_in_one_line(
    redis_client: redis.Redis, args: list[str], message: str
) -> None:
    before = log_length(redis_client)
    done = invoke(["task", "submit", "-c", "true", *args])
    assert done.exit_code != 0
    assert message in one_error_line(done)
    assert log_length(redis_client) == before


def test_a_bad_settings_default_is_refused_in_one_line(
    redis_client: redis.Redis, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setenv("FORGE_ISOLATION_MEMORY", "plenty")
    done = invoke(["task", "submit", "-c", "true"])
    assert done.exit_code != 0
    assert "isolation.memory" in done.stderr
    assert "Traceback" not in done.stderr


@pytest.mark.parametrize(
    ("base", "target"),
    [
        (None, ("api.anthropic.com", 443)),
        ("https://api.example.com", ("api.example.com", 443)),
        ("http://127.0.0.1:8080/v1", ("127.0.0.1", 8080)),
        ("http://localhost", ("localhost", 80)),
    ],
)
def test_the_api_a_network_api_sandbox_reaches(base: str | None, target: tuple[str, int]) -> None:
    env = {} if base is None else {"ANTHROPIC_BASE_URL": base}
    assert api_target(env) == target


@pytest.mark.parametrize(
    "base", ["http://10.0.0.5:8080", "http://[::1]:80", "not a url", "http://h:x"]
)
def test_an_api_the_sandbox_cannot_relay_to_is_refused(base: str) -> None:
    with pytest.raises(OSError, match="network api"):
        api_target({"ANTHROPIC_BASE_URL": base})
