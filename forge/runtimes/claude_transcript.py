"""A Claude Code attempt's stream-json log, rendered as a transcript a person reads.

`TranscriptRenderer.feed` takes one line of the attempt's log and returns the lines to print:
the agent's text, one line per tool call with its key argument, the tool's result abbreviated
(first lines, size), permission denials, API retries and errors, and the final result with
turns, duration, tokens and cost. Lines that carry nothing for a reader (partial-message
deltas, status and thinking-token counters, background-task bookkeeping) print nothing; a line
that is not JSON (Claude Code's stderr, merged into the same log) prints as it is.

Long texts are cut, with a count of what was cut, so that a 400 KB stream renders to something
a person scrolls. Pure (no I/O, no clock); every line it returns is redacted.
"""

from __future__ import annotations

import datetime as dt
import json
from typing import Any

from events.redact import redact

__all__ = ["TranscriptRenderer", "render_transcript"]

TEXT_LINES = 30  # an agent's text: at most this many lines
RESULT_LINES = 3  # a tool's result: its first lines
LINE_CHARS = 240  # any one printed line
_ARG_KEYS = ("command", "file_path", "notebook_path", "path", "pattern", "url", "query", "prompt")


def _size(n: int) -> str:
    if n < 1024:
        return f"{n} B"
    if n < 1024 * 1024:
        return f"{n / 1024:.1f} KB"
    return f"{n / (1024 * 1024):.1f} MB"


def _one_line(text: str, limit: int = LINE_CHARS) -> str:
    line = " ".join(text.split())
    return line if len(line) <= limit else f"{line[: limit - 1]}… (+{len(line) - limit + 1} chars)"


def _cut_line(line: str, limit: int = LINE_CHARS) -> str:
    line = line.rstrip()
    return line if len(line) <= limit else f"{line[: limit - 1]}… (+{len(line) - limit + 1} chars)"


def _block_lines(text: str, keep: int, indent: str) -> list[str]:
    """The first `keep` lines of `text`, each cut to one screen line, and a count of the rest."""
    lines = text.strip("\n").splitlines() or [""]
    shown = [indent + _cut_line(line) for line in lines[:keep]]
    if len(lines) > keep:
        rest = "\n".join(lines[keep:])
        shown.append(f"{indent}… {len(lines) - keep} more lines ({_size(len(rest.encode()))})")
    return shown


def _int(value: Any) -> int:
    return value if isinstance(value, int) and not isinstance(value, bool) else 0


def _seconds(ms: Any) -> str:
    value = _int(ms) / 1000
    return f"{value:.1f}s" if value < 60 else f"{int(value) // 60}m{int(value) % 60:02d}s"


def _tool_argument(name: str, tool_input: Any) -> str:
    """The one argument that says what a tool call does (a command, a path, a pattern)."""
    if not isinstance(tool_input, dict):
        return ""
    for key in _ARG_KEYS:
        value = tool_input.get(key)
        if isinstance(value, str) and value:
            text = _one_line(value, 160)
            content = tool_input.get("content")
            if name == "Write" and isinstance(content, str):
                count = len(content.splitlines())
                lines = f"{count} line{'s' if count != 1 else ''}"
                text += f" ({lines}, {_size(len(content.encode()))})"
            return text
    if not tool_input:
        return ""
    return _one_line(json.dumps(tool_input, ensure_ascii=False, sort_keys=True), 160)


def _result_text(content: Any) -> str:
    """A tool result's text: a string, or the text of its blocks (images named, not shown)."""
    if isinstance(content, str):
        return content
    if isinstance(content, list):
        parts = []
        for block in content:
            if isinstance(block, dict) and block.get("type") == "text":
                parts.append(str(block.get("text", "")))
            elif isinstance(block, dict):
                parts.append(f"[{block.get('type', 'block')}]")
        return "\n".join(parts)
    return "" if content is None else str(content)


class TranscriptRenderer:
    """Renders one attempt's log, line by line (see the module docstring)."""

    def __init__(self) -> None:
        self._tools: dict[str, str] = {}  # tool_use id -> tool name
        self._denied: set[str] = set()  # tool_use ids whose denial was printed already
        self._last_text = ""  # the agent's last text, so the final result is not printed twice
        self.result_seen = False
        self.lines_seen = 0  # JSON lines read

    def feed(self, line: str) -> list[str]:
        """The transcript lines that one log line yields (maybe none), secrets masked.

        Give it the log's raw lines: masking the output (not the JSON) cannot break a line."""
        return [redact(out) for out in self._render(line)]

    def _render(self, line: str) -> list[str]:
        stripped = line.strip()
        if not stripped:
            return []
        if not stripped.startswith("{"):
            return [_cut_line(stripped)]  # Claude Code's stderr
        try:
            data = json.loads(stripped)
        except ValueError:
            return [
                f"(unreadable line, {_size(len(stripped.encode()))}: {_one_line(stripped, 80)})"
            ]
        if not isinstance(data, dict):
            return []
        self.lines_seen += 1
        indent = "    " if data.get("parent_tool_use_id") else ""  # inside a subagent
        kind, subtype = data.get("type"), data.get("subtype")
        if kind == "system":
            return [indent + x for x in self._system(subtype, data)]
        if kind == "assistant":
            return [indent + x for x in self._assistant(data)]
        if kind == "user":
            return [indent + x for x in self._user(data)]
        if kind == "result":
            return self._result(data)
        if kind == "rate_limit_event":
            return self._rate_limit(data.get("rate_limit_info"))
        return []  # stream_event, control and other lines carry nothing for a reader

    def _system(self, subtype: Any, data: dict[str, Any]) -> list[str]:
        if subtype == "init":
            parts = [f"session {data.get('session_id', '?')}"]
            if data.get("model"):
                parts.append(f"model {data['model']}")
            if data.get("permissionMode"):
                parts.append(f"permissions {data['permissionMode']}")
            if data.get("cwd"):
                parts.append(f"cwd {data['cwd']}")
            if data.get("claude_code_version"):
                parts.append(f"claude {data['claude_code_version']}")
            return ["── " + " · ".join(parts)]
        if subtype == "api_retry":
            status = data.get("error_status")
            what = str(data.get("error") or "error") + (f" ({status})" if status else "")
            wait = (
                f" in {_seconds(data.get('retry_delay_ms'))}" if data.get("retry_delay_ms") else ""
            )
            return [f"↻ API retry {data.get('attempt')}/{data.get('max_retries')}{wait}: {what}"]
        if subtype == "task_notification":
            status = data.get("status")
            if status in (None, "completed"):
                return []
            return [f"  ⎿ background task {status}: {_one_line(str(data.get('summary') or ''))}"]
        if subtype == "compact_boundary":
            return ["── conversation compacted"]
        if subtype == "permission_denied":  # 2.1.332: then the tool result says it again
            if isinstance(data.get("tool_use_id"), str):
                self._denied.add(data["tool_use_id"])
            why = data.get("message") or f"{data.get('tool_name') or 'a tool'} was refused"
            return [f"  ✗ permission denied: {_one_line(str(why))}"]
        if subtype == "informational" and data.get("content"):
            return [f"note: {_one_line(str(data['content']))}"]
        return []  # status, thinking-token counts, task bookkeeping, hooks: nothing to read

    def _assistant(self, data: dict[str, Any]) -> list[str]:
        message = data.get("message")
        content = message.get("content") if isinstance(message, dict) else None
        if isinstance(content, str):
            content = [{"type": "text", "text": content}]
        if not isinstance(content, list):
            return []
        if data.get("is_api_error_message"):
            text = " ".join(_result_text(b.get("text")) for b in content if isinstance(b, dict))
            status = data.get("api_error_status")
            label = str(data.get("error") or "error") + (f", {status}" if status else "")
            return [f"✗ API error ({label}): {_one_line(text)}"]
        out: list[str] = []
        for block in content:
            if not isinstance(block, dict):
                continue
            kind = block.get("type")
            if kind == "text" and isinstance(block.get("text"), str) and block["text"].strip():
                self._last_text = block["text"].strip()
                out += _block_lines(block["text"], TEXT_LINES, "")
            elif kind == "thinking" and isinstance(block.get("thinking"), str):
                out.append(f"∴ thinking: {_one_line(block['thinking'], 160)}")
            elif kind in ("tool_use", "server_tool_use"):
                name = str(block.get("name") or "tool")
                if isinstance(block.get("id"), str):
                    self._tools[block["id"]] = name
                argument = _tool_argument(name, block.get("input"))
                out.append(f"● {name}" + (f": {argument}" if argument else ""))
        return out

    def _user(self, data: dict[str, Any]) -> list[str]:
        message = data.get("message")
        content = message.get("content") if isinstance(message, dict) else None
        if isinstance(content, str):
            return [f"user: {_one_line(content)}"] if content.strip() else []
        if not isinstance(content, list):
            return []
        out: list[str] = []
        for block in content:
            if not isinstance(block, dict):
                continue
            if block.get("type") == "text" and str(block.get("text", "")).strip():
                out.append(f"user: {_one_line(str(block['text']))}")
            elif block.get("type") == "tool_result":
                out += self._tool_result(block)
        return out

    def _tool_result(self, block: dict[str, Any]) -> list[str]:
        text = _result_text(block.get("content"))
        size = len(text.encode())
        if block.get("is_error"):
            if block.get("tool_use_id") in self._denied:
                return []
            if "haven't granted" in text or "requires approval" in text:
                return [f"  ✗ permission denied: {_one_line(text)}"]
            lines = _block_lines(text, RESULT_LINES, "    ")
            return [f"  ✗ error: {lines[0].strip()}", *lines[1:]]
        if not text.strip():
            return ["  ⎿ (no output)"]
        lines = _block_lines(text, RESULT_LINES, "    ")
        first = lines[0].strip()
        if len(lines) == 1:
            return [f"  ⎿ {first}"]
        return [f"  ⎿ {first}", *lines[1:], f"    ({_size(size)} in all)"]

    def _result(self, data: dict[str, Any]) -> list[str]:
        self.result_seen = True
        ok = data.get("is_error") is False
        denials = [d for d in data.get("permission_denials") or [] if isinstance(d, dict)]
        if ok and denials:  # Claude Code calls it a success; the work was not all done
            count = len(denials)
            head = f"⚠ done, but {count} tool call{'s were' if count != 1 else ' was'} denied"
        elif ok:
            head = "✓ done"
        else:
            why = data.get("terminal_reason") or data.get("subtype") or "error"
            errors = [str(e) for e in data.get("errors") or [] if e]
            text = "; ".join(errors) or str(data.get("result") or "")
            head = f"✗ failed ({why})" + (f": {_one_line(text)}" if text else "")
        out = [f"{head} · {self._figures(data)}" if ok else head]
        if not ok:
            out.append("   " + self._figures(data))
        if ok and isinstance(data.get("result"), str):
            final = data["result"].strip()
            if final and final != self._last_text:
                out += _block_lines(final, TEXT_LINES, "   ")
        for denial in denials:
            name = str(denial.get("tool_name") or "tool")
            argument = _tool_argument(name, denial.get("tool_input"))
            out.append(f"   ✗ denied: {name}" + (f": {argument}" if argument else ""))
        return out

    @staticmethod
    def _figures(data: dict[str, Any]) -> str:
        turns = _int(data.get("num_turns"))
        parts = [f"{turns} turn{'s' if turns != 1 else ''}"]
        if "duration_ms" in data:
            took = _seconds(data.get("duration_ms"))
            api = (
                f" (API {_seconds(data['duration_api_ms'])})" if data.get("duration_api_ms") else ""
            )
            parts.append(took + api)
        usage: dict[str, Any] = data["usage"] if isinstance(data.get("usage"), dict) else {}
        models = data.get("modelUsage")
        rows = (
            [m for m in models.values() if isinstance(m, dict)] if isinstance(models, dict) else []
        )
        if rows:
            tokens_in = sum(_int(m.get("inputTokens")) for m in rows)
            cached = sum(_int(m.get("cacheReadInputTokens")) for m in rows)
            written = sum(_int(m.get("cacheCreationInputTokens")) for m in rows)
            tokens_out = sum(_int(m.get("outputTokens")) for m in rows)
        else:
            tokens_in = _int(usage.get("input_tokens"))
            cached = _int(usage.get("cache_read_input_tokens"))
            written = _int(usage.get("cache_creation_input_tokens"))
            tokens_out = _int(usage.get("output_tokens"))
        tokens = f"tokens {tokens_in:,} in"
        cache = [f"{n:,} cache {what}" for n, what in ((cached, "read"), (written, "write")) if n]
        if cache:
            tokens += f" (+{', '.join(cache)})"
        parts.append(f"{tokens}, {tokens_out:,} out")
        cost = data.get("total_cost_usd")
        if isinstance(cost, int | float) and not isinstance(cost, bool):
            parts.append(f"${cost:.4f}")
        return " · ".join(parts)

    @staticmethod
    def _rate_limit(info: Any) -> list[str]:
        if not isinstance(info, dict) or info.get("status") in (None, "allowed"):
            return []
        line = f"⚠ rate limit {info.get('status')}"
        if info.get("rateLimitType"):
            line += f" ({info['rateLimitType']})"
        resets = info.get("resetsAt")
        if isinstance(resets, int | float) and not isinstance(resets, bool):
            try:
                when = dt.datetime.fromtimestamp(resets, dt.UTC).strftime("%Y-%m-%d %H:%M UTC")
                line += f", resets {when}"
            except (OverflowError, ValueError, OSError):
                line += f", resets at {resets!r}"
        return [line]

    def finish(self) -> list[str]:
        """What to say once the attempt has ended: an ending with no result line."""
        if self.result_seen or not self.lines_seen:
            return []
        return ["✗ no result: the agent ended before it finished (killed, or it crashed)"]


def render_transcript(lines: list[str]) -> list[str]:
    """A whole log at once (tests, and callers that hold the lines already)."""
    renderer = TranscriptRenderer()
    return [out for line in lines for out in renderer.feed(line)] + renderer.finish()
