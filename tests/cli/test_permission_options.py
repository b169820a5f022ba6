"""Permission options of claude tasks through the CLI and tasks files: what is recorded in the
log (the effective policy, resolved at submit), and bad input refused in one line."""

from __future__ import annotations

import json
import shutil
import subprocess
from pathlib import Path

import msgspec
import pytest
import redis

from events import types as t
from forge.permissions import is_root
from forge.runtimes.claude_command import bundled_binary
from tests.cli.helpers import invoke, log_length, one_error_line, store_of
from tests.mock_anthropic import DEFAULT_MODEL, MockAnthropic, Text, ToolUse

pytestmark = pytest.mark.usefixtures("forge_env")

BINARY = shutil.which("claude") or bundled_binary()


def _definitions(client: redis.Redis) -> dict[str, t.TaskDefinition]:
    return {
        e.event.spec.name or e.event.task_id: e.event.spec
        for e in store_of(client).read_range()
        if isinstance(e.event, t.TaskSubmitted)
    }


def _repo(path: Path) -> Path:
    path.mkdir()
    subprocess.run(["git", "init", "-q", str(path)], check=True)
    return path


def test_flags_and_the_settings_default_are_recorded_in_the_definition(
    redis_client: redis.Redis, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    extra = tmp_path / "extra"
    extra.mkdir()
    assert invoke(["task", "submit", "plain", "--name", "plain"]).exit_code == 0
    flags = ["--permission-mode", "plan", "--allow-tool", "Read,Edit"]
    flags += ["--allow-tool", "Bash(make *)", "--deny-tool", "WebFetch", "--add-dir", str(extra)]
    done = invoke(["task", "submit", "flags", "--name", "flags", *flags])
    assert done.exit_code == 0, done.stderr
    assert invoke(["task", "submit", "locked", "--name", "locked", "--locked"]).exit_code == 0
    monkeypatch.setenv("FORGE_CLAUDE_PERMISSION_MODE", "default")
    monkeypatch.setenv("FORGE_CLAUDE_ALLOWED_TOOLS", "Edit")
    assert invoke(["task", "submit", "env", "--name", "env"]).exit_code == 0
    assert invoke(["task", "submit", "-c", "true", "--name", "shell"]).exit_code == 0

    d = _definitions(redis_client)
    assert (d["plain"].permission_mode, d["plain"].allowed_tools) == ("acceptEdits", ("Bash",))
    assert d["plain"].disallowed_tools == ("Bash(git push *)", "Bash(sudo *)")
    assert d["flags"].permission_mode == "plan"
    assert d["flags"].allowed_tools == ("Read", "Edit", "Bash(make *)")
    assert (d["flags"].disallowed_tools, d["flags"].add_dirs) == (("WebFetch",), (str(extra),))
    assert (d["locked"].permission_mode, d["locked"].allowed_tools) == ("dontAsk", ())
    assert d["locked"].disallowed_tools == ()
    assert (d["env"].permission_mode, d["env"].allowed_tools) == ("default", ("Edit",))
    assert (d["shell"].permission_mode, d["shell"].allowed_tools) == (None, ())

    shown = invoke(["task", "show", _id(redis_client, "flags")])
    assert "permissions: plan   allow Read, Edit, Bash(make *)   deny WebFetch" in shown.stdout


def _id(client: redis.Redis, name: str) -> str:
    return next(
        e.event.task_id
        for e in store_of(client).read_range()
        if isinstance(e.event, t.TaskSubmitted) and e.event.spec.name == name
    )


def test_a_tasks_file_sets_policies_per_task_over_its_defaults(
    redis_client: redis.Redis, tmp_path: Path
) -> None:
    _repo(tmp_path / "repo")
    (tmp_path / "docs").mkdir()
    path = tmp_path / "tasks.toml"
    path.write_text(
        "[defaults]\n"
        'permission_mode = "acceptEdits"\n'
        'allowed_tools = ["Bash(pytest *)", "Bash(git commit *)"]\n'
        'add_dirs = ["docs"]\n'
        "[[task]]\n"
        'name = "fix"\nprompt = "Fix the bug"\nrepo = "repo"\n'
        "[[task]]\n"
        'name = "review"\nprompt = "Review it"\nlocked = true\n'
        "[[task]]\n"
        'name = "none"\nprompt = "Only edits"\nallowed_tools = []\n'
        'disallowed_tools = ["Bash"]\n'
    )
    done = invoke(["task", "submit", "--file", str(path)])
    assert done.exit_code == 0, done.stderr
    d = _definitions(redis_client)
    docs = str((tmp_path / "docs").resolve())
    assert d["fix"].allowed_tools == ("Bash(pytest *)", "Bash(git commit *)")
    assert (d["fix"].permission_mode, d["fix"].add_dirs) == ("acceptEdits", (docs,))
    assert (d["review"].permission_mode, d["review"].allowed_tools) == ("dontAsk", ())
    assert d["review"].add_dirs == ()
    assert (d["none"].allowed_tools, d["none"].disallowed_tools) == ((), ("Bash",))


REFUSED = {
    "an unknown mode": (["--permission-mode", "yolo"], "unknown permission mode 'yolo'"),
    "a malformed rule": (["--allow-tool", "Bash(git"], "'Bash(git' is not a tool rule"),
    "a comma in a rule": (["--deny-tool", "Bash(a,b)"], "cannot hold a comma"),
    "locked with allow rules": (["--locked", "--allow-tool", "Edit"], "locked cannot be"),
    "a missing add-dir": (["--add-dir", "/nonexistent/forge-dir"], "no such directory"),
}


@pytest.mark.parametrize("case", list(REFUSED))
def test_bad_permission_input_is_one_line_and_nothing_is_appended(
    case: str, redis_client: redis.Redis
) -> None:
    args, message = REFUSED[case]
    before = log_length(redis_client)
    result = invoke(["task", "submit", "a prompt", *args])
    assert result.exit_code == 1, (result.stdout, result.stderr)
    assert message in one_error_line(result)
    assert log_length(redis_client) == before


def test_permission_options_on_a_shell_task_and_in_a_file_are_refused(tmp_path: Path) -> None:
    shell = invoke(["task", "submit", "-c", "true", "--allow-tool", "Edit"])
    assert shell.exit_code == 1
    assert "apply to claude tasks only" in one_error_line(shell)
    path = tmp_path / "tasks.toml"
    path.write_text('[[task]]\nprompt = "x"\npermission_mode = "sudo"\n')
    filed = invoke(["task", "submit", "--file", str(path)])
    assert filed.exit_code == 1
    assert "unknown permission mode 'sudo'" in one_error_line(filed)
    run = invoke(["run", "--command", "true", "--locked"])
    assert run.exit_code == 2
    assert "apply to --prompt tasks" in one_error_line(run)


@pytest.mark.skipif(not is_root(), reason="Claude Code refuses bypassPermissions only as root")
def test_bypass_as_root_needs_the_sandbox_setting(
    redis_client: redis.Redis, monkeypatch: pytest.MonkeyPatch
) -> None:
    refused = invoke(["task", "submit", "x", "--permission-mode", "bypassPermissions"])
    assert refused.exit_code == 1
    assert "claude.sandbox = true" in one_error_line(refused)
    monkeypatch.setenv("FORGE_CLAUDE_SANDBOX", "true")
    done = invoke(["task", "submit", "x", "--permission-mode", "bypassPermissions"])
    assert done.exit_code == 0, done.stderr
    (spec,) = _definitions(redis_client).values()
    assert spec.permission_mode == "bypassPermissions"
    assert spec.env == {"IS_SANDBOX": "1"}
    assert msgspec.json.encode(spec)  # recorded as plain data


@pytest.mark.skipif(BINARY is None, reason="no claude binary (install forge[claude])")
def test_forge_run_prompt_takes_repo_model_budget_and_a_policy(
    redis_client: redis.Redis, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """`forge run --prompt` with the real binary: the options reach the task; a locked agent's
    Write is refused, recorded, and the run does not end as a success."""
    repo = _repo(tmp_path / "repo")
    git = ["git", "-C", str(repo), "-c", "user.name=T", "-c", "user.email=t@example.invalid"]
    subprocess.run([*git, "commit", "-q", "--allow-empty", "-m", "init"], check=True)
    home = tmp_path / "agent-home"
    home.mkdir()
    with MockAnthropic() as mock:
        mock.script(ToolUse("Write", {"file_path": "x.txt", "content": "x"}), Text("Wrote x."))
        for name, value in {
            "HOME": str(home),
            "FORGE_RUNTIME_CLAUDE_BINARY": str(BINARY),
            "ANTHROPIC_API_KEY": "sk-ant-api03-forge-run-key-0123456789",
            "ANTHROPIC_BASE_URL": mock.url,
            "CLAUDE_CODE_MAX_RETRIES": "1",
            "CLAUDE_CODE_DISABLE_NONESSENTIAL_TRAFFIC": "1",
            "DISABLE_TELEMETRY": "1",
        }.items():
            monkeypatch.setenv(name, value)
        args = ["run", "--prompt", "Write x.txt", "--repo", str(repo), "--model", DEFAULT_MODEL]
        result = invoke([*args, "--budget-usd", "2", "--locked", "--json"])
    assert result.exit_code == 1, result.stderr
    out = json.loads(result.stdout)
    (task,) = out["tasks"]
    store = store_of(redis_client, out["namespace"])
    assert (task["state"], task["failure"]) == ("failed", "permission_denied")
    (spec,) = [e.event.spec for e in store.read_range() if isinstance(e.event, t.TaskSubmitted)]
    assert (spec.repo, spec.model, spec.budget_usd) == (str(repo), DEFAULT_MODEL, 2.0)
    assert (spec.permission_mode, spec.allowed_tools) == ("dontAsk", ())
    denied = [e.event for e in store.read_range() if isinstance(e.event, t.TaskPermissionDenied)]
    assert [d.tool for d in denied] == ["Write"]
    assert not (repo / "x.txt").exists()
