"""Permission options of claude tasks through the CLI and tasks files: what is recorded in the
log (the effective policy, resolved at submit), and bad input refused in one line."""

from __future__ import annotations

import subprocess
from pathlib import Path

import msgspec
import pytest
import redis

from events import types as t
from forge.permissions import is_root
from tests.cli.helpers import invoke, log_length, one_error_line, store_of

pytestmark = pytest.mark.usefixtures("forge_env")


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
    assert (d["plain"].permission_mode, d["plain"].allowed_tools) == ("acceptEdits", ["Bash"])
    assert d["plain"].disallowed_tools == ["Bash(git push *)", "Bash(sudo *)"]
    assert d["flags"].permission_mode == "plan"
    assert d["flags"].allowed_tools == ["Read", "Edit", "Bash(make *)"]
    assert (d["flags"].disallowed_tools, d["flags"].add_dirs) == (["WebFetch"], [str(extra)])
    assert (d["locked"].permission_mode, d["locked"].allowed_tools) == ("dontAsk", [])
    assert d["locked"].disallowed_tools == []
    assert (d["env"].permission_mode, d["env"].allowed_tools) == ("default", ["Edit"])
    assert (d["shell"].permission_mode, d["shell"].allowed_tools) == (None, [])

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
    assert d["fix"].allowed_tools == ["Bash(pytest *)", "Bash(git commit *)"]
    assert (d["fix"].permission_mode, d["fix"].add_dirs) == ("acceptEdits", [docs])
    assert (d["review"].permission_mode, d["review"].allowed_tools) == ("dontAsk", [])
    assert d["review"].add_dirs == []
    assert (d["none"].allowed_tools, d["none"].disallowed_tools) == ([], ["Bash"])


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
