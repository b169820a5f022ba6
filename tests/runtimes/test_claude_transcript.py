"""The transcript renderer over real Claude Code captures (tests/data/claude/)."""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from events.redact import register_secrets
from forge.runtimes.claude_transcript import LINE_CHARS, TranscriptRenderer, render_transcript

DATA = Path(__file__).resolve().parent.parent / "data" / "claude"
CAPTURES = sorted(DATA.glob("*.jsonl"))


def lines_of(name: str) -> list[str]:
    return (DATA / name).read_text().splitlines()


def render(name: str) -> list[str]:
    return render_transcript(lines_of(name))


@pytest.mark.parametrize("capture", CAPTURES, ids=lambda p: p.name)
def test_every_capture_renders_to_short_readable_lines(capture: Path) -> None:
    out = render_transcript(capture.read_text().splitlines())
    assert out[0].startswith(("── session ", "✗ failed"))  # a failed --resume has no init
    assert all(len(line) <= LINE_CHARS + 40 for line in out)
    assert not any(line.lstrip().startswith("{") for line in out)  # no raw JSON left


def test_a_tool_call_and_its_result() -> None:
    assert render("success_tool_use.jsonl") == [
        "── session 1f79ec12-18ff-4c66-ae20-ca745660a10f · model claude-sonnet-4-5-20250929"
        " · permissions default · cwd /home/dev/project · claude 2.1.330",
        "I'll list the files.",
        "● Bash: ls",
        "  ⎿ hello.txt",
        "The directory contains a single file, `hello.txt`.",
        "✓ done · 2 turns · 0.5s (API 0.4s) · tokens 3,046 in (+22,528 cache read), 72 out"
        " · $0.0170",
    ]


def test_api_retries_and_the_error_that_ended_the_run() -> None:
    out = render("fail_http429_rate_limit.jsonl")
    assert out[1:] == [
        "↻ API retry 1/2 in 1.2s: rate_limit (429)",
        "↻ API retry 2/2 in 1.2s: rate_limit (429)",
        "✗ API error (rate_limit, 429): API Error: Request rejected (429) · Number of request"
        " tokens has exceeded your per-minute rate limit",
        "✗ failed (api_error): API Error: Request rejected (429) · Number of request tokens has"
        " exceeded your per-minute rate limit",
        "   1 turn · 2.5s · tokens 0 in, 0 out · $0.0000",
    ]


def test_max_turns_names_the_limit() -> None:
    out = render("fail_error_max_turns.jsonl")
    assert "✗ failed (max_turns): Reached maximum number of turns (1)" in out


def test_a_subscription_limit_shows_when_it_resets() -> None:
    out = render("fail_http429_usage_limit_oauth.jsonl")
    assert "⚠ rate limit rejected (five_hour), resets 2026-11-25 01:00 UTC" in out


def test_an_agent_killed_mid_tool_has_no_result() -> None:
    out = render("killed_sigterm_exit143.jsonl")
    assert out[-3:] == [
        "  ⎿ background task stopped: List files in current directory",
        "  ✗ error: Exit code 137",
        "✗ no result: the agent ended before it finished (killed, or it crashed)",
    ]


def test_partial_messages_print_the_text_once_and_thinking_is_one_line() -> None:
    partial = render("success_partial_messages.jsonl")
    assert partial.count("The directory contains a single file, `hello.txt`.") == 1
    assert "∴ thinking: The user wants a greeting. I will reply briefly." in render(
        "success_thinking.jsonl"
    )


def test_stderr_lines_pass_through() -> None:
    stderr = (DATA / "fail_unknown_flag.stderr").read_text().strip()
    assert render_transcript([stderr]) == [stderr]


def _user_result(tool_id: str, content: str, is_error: bool = False) -> str:
    block = {"tool_use_id": tool_id, "type": "tool_result", "content": content}
    return json.dumps(
        {"type": "user", "message": {"role": "user", "content": [{**block, "is_error": is_error}]}}
    )


def _tool_use(tool_id: str, name: str, tool_input: dict[str, str]) -> str:
    block = {"type": "tool_use", "id": tool_id, "name": name, "input": tool_input}
    return json.dumps({"type": "assistant", "message": {"content": [block]}})


def test_a_permission_denial_is_named_in_the_turn_and_in_the_result() -> None:
    # the shapes Claude Code 2.1.332 prints in default mode (PROTOCOL.md, section 1b)
    result = json.loads(lines_of("success_tool_use.jsonl")[-1])
    result["permission_denials"] = [
        {"tool_name": "Write", "tool_use_id": "toolu_1", "tool_input": {"file_path": "/w/a.txt"}}
    ]
    out = render_transcript(
        [
            _tool_use("toolu_1", "Write", {"file_path": "/w/a.txt", "content": "a\nb\n"}),
            _user_result(
                "toolu_1",
                "Claude requested permissions to write to /w/a.txt, "
                "but you haven't granted it yet.",
                is_error=True,
            ),
            json.dumps(result),
        ]
    )
    assert out[0] == "● Write: /w/a.txt (2 lines, 4 B)"
    assert out[1].startswith("  ✗ permission denied: Claude requested permissions to write")
    assert out[2].startswith("⚠ done, but 1 tool call was denied · 2 turns · ")
    assert out[-1] == "   ✗ denied: Write: /w/a.txt"


def test_a_denial_announced_by_a_system_line_is_printed_once() -> None:
    # 2.1.332 prints system/permission_denied before the tool result (seen in a real run)
    denied = {
        "type": "system",
        "subtype": "permission_denied",
        "tool_name": "Write",
        "tool_use_id": "toolu_1",
        "message": "Claude requested permissions to write to /w/a.txt, but you haven't granted "
        "it yet.",
    }
    out = render_transcript(
        [
            _tool_use("toolu_1", "Write", {"file_path": "/w/a.txt", "content": "a\n"}),
            json.dumps(denied),
            _user_result("toolu_1", str(denied["message"]), is_error=True),
        ]
    )
    assert out[:2] == [
        "● Write: /w/a.txt (1 line, 2 B)",
        "  ✗ permission denied: Claude requested permissions to write to /w/a.txt, but you "
        "haven't granted it yet.",
    ]
    assert len([line for line in out if "permission denied" in line]) == 1


def test_a_400_kb_stream_renders_to_something_a_person_scrolls() -> None:
    big_output = "\n".join(f"line {i} " + "x" * 60 for i in range(2_000))  # ~140 KB
    long_text = "\n".join(f"paragraph {i} " + "y" * 80 for i in range(1_000))  # ~90 KB
    stream = [lines_of("success_tool_use.jsonl")[0]]
    for i in range(3):
        stream.append(_tool_use(f"toolu_{i}", "Bash", {"command": "cat big.log"}))
        stream.append(_user_result(f"toolu_{i}", big_output))
    stream.append(json.dumps({"type": "assistant", "message": {"content": long_text}}))
    assert sum(len(line) for line in stream) > 400_000
    out = render_transcript(stream)
    assert len(out) < 60
    assert sum(len(line) for line in out) < 10_000
    assert "    … 1997 more lines (" in "\n".join(out)  # the tool result: 3 lines shown
    assert "… 970 more lines (" in "\n".join(out)  # the text: 30 lines shown
    assert out[6].startswith("    (")
    assert out[6].endswith(" KB in all)")


def test_a_single_huge_line_is_cut_with_a_count() -> None:
    (line,) = TranscriptRenderer().feed(_tool_use("t", "Bash", {"command": "echo " + "z" * 5_000}))
    assert len(line) < LINE_CHARS
    assert "chars)" in line


def test_secrets_are_masked_in_the_transcript_even_where_masking_would_break_the_json() -> None:
    register_secrets(["canary-value-31337"])
    line = _tool_use("t", "Bash", {"command": 'curl -H "x-api-key: canary-value-31337" host'})
    renderer = TranscriptRenderer()
    (out,) = renderer.feed(line)
    assert out.startswith("● Bash: curl -H")
    assert "canary-value-31337" not in out
    (key,) = renderer.feed(_user_result("t", "sk-ant-api03-abcdefghijklmnop leaked"))
    assert "sk-ant-api03" not in key


def test_a_broken_json_line_is_named_not_fatal() -> None:
    out = render_transcript(['{"type": "assistant", "message": {"content": [{"type"'])
    assert out[0].startswith("(unreadable line, ")
