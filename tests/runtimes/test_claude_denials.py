"""Refused tool calls: read from a real capture, recorded without their content, and turning a
"success" into a `permission_denied` failure; the policy reaching the command line."""

from __future__ import annotations

from pathlib import Path

from actors.policy import OrchestratorConfig, build_spec
from actors.runtime import is_transient
from events.state import TaskState
from events.types import TaskDefinition
from forge.runtimes.claude_command import build_argv
from forge.runtimes.claude_denials import MAX_DENIALS, denied_reason, read_denials
from forge.runtimes.claude_stream import ProgressThrottle, StreamParser

DATA = Path(__file__).parent.parent / "data" / "claude"
CAPTURE = "denied_write_and_push_default_mode.jsonl"


def _parse(name: str, exit_code: int = 0) -> StreamParser:
    parser = StreamParser(throttle=ProgressThrottle(interval=0.0))
    for line in (DATA / name).read_text().splitlines():
        parser.feed(line)
    return parser


def test_a_success_with_refused_calls_is_a_permanent_permission_denied_failure() -> None:
    outcome = _parse(CAPTURE).finish(0)
    assert (outcome.ok, outcome.failure) == (False, "permission_denied")
    assert not is_transient(outcome.failure)
    assert [(d.tool, d.summary) for d in outcome.denials] == [
        ("Write", "/tmp/forge-capture-work/notes.txt"),
        ("Bash", "git push origin HEAD"),
    ]
    assert all(d.tool_use_id.startswith("toolu_") for d in outcome.denials)
    assert outcome.reason.startswith("2 tool calls refused by the permission policy: Write")
    assert "never recorded" not in repr(outcome)  # the Write's content
    assert outcome.result == "I could not write notes.txt or push."
    assert outcome.cost_usd > 0


def test_a_clean_success_has_no_denials() -> None:
    outcome = _parse("success_tool_use.jsonl").finish(0)
    assert (outcome.ok, outcome.denials) == (True, [])


def test_malformed_denials_are_skipped_and_many_are_capped() -> None:
    raw = [
        None,
        {"tool_name": ""},
        {"tool_name": "mcp__srv__deploy", "tool_input": {"env": "prod"}},
        {"tool_name": "Bash", "tool_input": {"command": "curl https://u:hunter2@example.com/x"}},
    ]
    deploy, bash = read_denials(raw)
    assert (deploy.tool, deploy.summary) == ("mcp__srv__deploy", "")
    assert "hunter2" not in bash.summary  # redacted
    many = [{"tool_name": "Write", "tool_input": {"file_path": f"f{i}"}} for i in range(50)]
    assert len(read_denials(many)) == MAX_DENIALS
    assert denied_reason(read_denials(many), 50).startswith("50 tool calls refused")
    assert read_denials("not a list") == []


def test_the_policy_recorded_in_the_definition_reaches_the_command_line() -> None:
    config = OrchestratorConfig(
        node_id="n",
        logs_dir="/tmp/logs",
        permission_mode="acceptEdits",
        allowed_tools=["Bash"],
        disallowed_tools=["Bash(sudo *)"],
    )
    recorded = TaskDefinition(
        runtime="claude",
        prompt="p",
        permission_mode="plan",
        allowed_tools=["Read", "Bash(git *)"],
        add_dirs=["/srv/a", "/srv/b"],
    )
    spec = build_spec(TaskState(task_id="t", state="queued", definition=recorded), 1, config)
    argv = build_argv("claude", spec)
    assert argv[argv.index("--permission-mode") + 1] == "plan"
    assert argv[argv.index("--allowedTools") + 1] == "Read,Bash(git *)"
    assert "--disallowedTools" not in argv  # the task's own (empty) deny list, not the default
    assert [argv[i + 1] for i, a in enumerate(argv) if a == "--add-dir"] == ["/srv/a", "/srv/b"]
    assert argv[-2:] == ["--", "p"]

    old = TaskDefinition(runtime="claude", prompt="p")  # a log from before policies
    spec = build_spec(TaskState(task_id="t", state="queued", definition=old), 1, config)
    assert (spec.permission_mode, spec.allowed_tools) == ("acceptEdits", ["Bash"])
    assert spec.disallowed_tools == ["Bash(sudo *)"]
    shell = TaskDefinition(command=["true"])
    spec = build_spec(TaskState(task_id="t", state="queued", definition=shell), 1, config)
    assert (spec.permission_mode, spec.allowed_tools) == (None, [])
