"""Canary secrets never reach what a command prints, human or `--json`.

Tasks carry three canaries the ways a secret reaches a task: an API key written into the
command, a password in a connection URL written into the command, and a secret variable passed
to the agent through the environment allow-list (which the agent prints)."""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from tests.cli.helpers import invoke

pytestmark = pytest.mark.usefixtures("forge_env", "redis_client")

API_KEY = "sk-ant-api03-CanaryKey7x9QAAAAAAAAAAAAAAAAAAAAAA"
URL_PASSWORD = "Hunter2CanaryPw"
ENV_SECRET = "canary-env-secret-5150"
CANARIES = (API_KEY, "CanaryKey7x9", URL_PASSWORD, ENV_SECRET)

SCRIPT = (
    f"echo token={API_KEY}; echo key {API_KEY}; "
    f"echo redis://forge:{URL_PASSWORD}@localhost:6379/0; echo env=$CANARY_API_TOKEN"
)


def _leaks(text: str) -> list[str]:
    return [c for c in CANARIES if c in text]


@pytest.fixture
def ran(monkeypatch: pytest.MonkeyPatch) -> dict[str, str]:
    """Run one task that prints every canary, and queue one more that carries them; returns
    the output of `forge run` by format, with the ids of both tasks."""
    monkeypatch.setenv("CANARY_API_TOKEN", ENV_SECRET)
    monkeypatch.setenv("FORGE_RUNTIME_ENV_ALLOWLIST", "PATH,HOME,CANARY_API_TOKEN")
    command = f"sh -c '{SCRIPT}'"
    run = invoke(["run", "--command", command, "--namespace", "forge", "--agents", "1"])
    assert run.exit_code == 0, run.stdout + run.stderr
    submit = invoke(["task", "submit", "--command", command, "--priority", "5"])
    assert submit.exit_code == 0, submit.stderr
    queued = submit.stdout.strip()
    listed = json.loads(invoke(["task", "list", "--json"]).stdout)
    done = next(x["task_id"] for x in listed if x["state"] == "completed")
    return {"run": run.stdout + run.stderr, "done": done, "queued": queued}


def _outputs(ran: dict[str, str], tmp_path: Path) -> dict[str, str]:
    """What every reading command prints, human and --json, keyed by the command."""
    commands = [
        ["status"],
        ["task", "list"],
        ["events", "tail", "-n", "1000"],
        ["events", "replay"],
    ]
    for task_id in (ran["done"], ran["queued"]):
        commands += [["task", "show", task_id], ["task", "history", task_id]]
    commands.append(["task", "logs", ran["done"]])
    out = {"run": ran["run"]}
    for args in commands:
        for extra in ([], ["--json"]) if args[1:2] != ["logs"] else ([],):
            result = invoke([*args, *extra])
            assert result.exit_code == 0, (args, result.stderr)
            out[" ".join([*args, *extra])] = result.stdout + result.stderr
    export = tmp_path / "export.jsonl"
    assert invoke(["events", "export", str(export)]).exit_code == 0
    out["events export"] = export.read_text()
    out["events export -"] = invoke(["events", "export", "-"]).stdout
    return out


def test_no_command_prints_a_canary_secret(ran: dict[str, str], tmp_path: Path) -> None:
    outputs = _outputs(ran, tmp_path)

    leaks = {command: found for command, text in outputs.items() if (found := _leaks(text))}
    assert leaks == {}
    # the secrets were there to leak: the commands show the masked forms
    assert "token=***" in outputs["task list"] + outputs[f"task show {ran['queued']}"]
    assert "env=***" in outputs[f"task logs {ran['done']}"]


def test_the_attempt_log_file_holds_no_canary_secret(ran: dict[str, str]) -> None:
    shown = json.loads(invoke(["task", "show", ran["done"], "--json"]).stdout)
    text = Path(shown["log_path"]).read_text()
    assert "env=***" in text  # the agent printed the allow-listed secret, masked
    assert _leaks(text) == []


REDIS_PASSWORD = "Canary-Redis-Pw-6e2b"
SENTINEL_PASSWORD = "Canary-Sentinel-Pw-0c4d"


@pytest.mark.parametrize(
    "url",
    [
        f"redis://forge:{REDIS_PASSWORD}@127.0.0.1:1/0",
        f"rediss://forge:{REDIS_PASSWORD}@127.0.0.1:1/0",
        f"redis+sentinel://forge:{REDIS_PASSWORD}@127.0.0.1:1,127.0.0.1:2/forge",
    ],
)
def test_no_command_prints_a_redis_password(monkeypatch: pytest.MonkeyPatch, url: str) -> None:
    """The passwords of a production Redis (docs/redis.md) reach neither what a command
    prints nor the line it fails with, when the server cannot be reached."""
    monkeypatch.setenv("FORGE_REDIS_URL", url)
    monkeypatch.setenv("FORGE_REDIS_SENTINEL_PASSWORD", SENTINEL_PASSWORD)
    results = [
        invoke(["status"]),
        invoke(["task", "submit", "--command", "true"]),
        invoke(["config", "show"]),
        invoke(["config", "show", "--json"]),
    ]

    assert [r.exit_code for r in results] == [1, 1, 0, 0]
    for result in results:
        text = result.stdout + result.stderr
        assert REDIS_PASSWORD not in text
        assert SENTINEL_PASSWORD not in text
    assert "forge:***@127.0.0.1:1" in results[0].stderr
