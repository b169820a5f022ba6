"""Claude Code's stream-json output, read line by line into notices and an outcome.

Pure: no I/O, no threads. `StreamParser.feed` takes one stdout line and returns the notices it
yields; `StreamParser.finish` classifies the attempt from what was seen and how the process
ended. The rules follow the CLI's own contract (see docs/claude.md):

* a line that is not a JSON object, or has a type we do not know, is skipped, never fatal
  (text lines become `OutputLine`s: Claude Code's stderr, merged into the same log);
* the `result` line is authoritative and judged by `is_error`, never by `subtype` (an API
  failure ends as `subtype:"success"` with `is_error:true`);
* no `result` line and a signal means the agent died.

Every text that leaves the parser (summaries, reasons) goes through `events.redact.redact`.
"""

from __future__ import annotations

import signal as signals
import time
from collections import deque
from collections.abc import Callable
from typing import Any

import msgspec

from actors.runtime import (
    FailureClass,
    Notice,
    Outcome,
    OutputLine,
    ProgressNotice,
    SessionNotice,
    UsageNotice,
)
from events.redact import redact
from forge.runtimes.claude_denials import denied_reason, read_denials
from forge.runtimes.claude_reset import parse_reset_time
from forge.runtimes.claude_usage import UsageMeter, UsageThrottle

__all__ = ["ProgressThrottle", "StreamParser", "classify_api_error"]

SUMMARY_CHARS = 200  # a progress summary is one short line
_REASON_CHARS = 500


class _Line(msgspec.Struct, kw_only=True):
    """The fields of any stream-json line we read; everything else is ignored by the decoder.

    `message` stays raw so that a multi-MiB tool result line costs one scan, not a tree of
    Python objects; it is decoded only for `assistant` lines.
    """

    type: str = ""
    subtype: str | None = None
    session_id: str | None = None
    model: str | None = None
    tools: list[Any] | None = None
    message: msgspec.Raw = msgspec.field(default_factory=msgspec.Raw)
    error: Any = None
    is_api_error_message: bool = False
    api_error_status: Any = None
    attempt: Any = None
    max_retries: Any = None
    error_status: Any = None
    rate_limit_info: dict[str, Any] | None = None
    is_error: bool | None = None
    result: Any = None
    errors: list[Any] | None = None
    terminal_reason: str | None = None
    total_cost_usd: float | None = None
    usage: dict[str, Any] | None = None
    modelUsage: dict[str, Any] | None = None  # the CLI's spelling
    permission_denials: Any = None  # refused tool calls (forge.runtimes.claude_denials)


class _Block(msgspec.Struct, kw_only=True):
    type: str = ""
    text: Any = None
    name: Any = None
    input: Any = None


class _Message(msgspec.Struct, kw_only=True):
    model: str | None = None
    content: list[_Block] | str = msgspec.field(default_factory=list)


_line_decoder = msgspec.json.Decoder(_Line)
_message_decoder = msgspec.json.Decoder(_Message)


class ProgressThrottle:
    """At most one progress notice per `interval` seconds; the latest skipped one is kept.

    A kept summary is released by the next call once the interval has passed, or by `flush`.
    """

    def __init__(self, interval: float = 1.0, clock: Callable[[], float] = time.monotonic):
        self.interval = interval
        self._clock = clock
        self._last: float | None = None
        self._pending: str | None = None

    def offer(self, summary: str | None) -> list[Notice]:
        """Hand in a new summary (or None on a line without one); return what may go out now."""
        now = self._clock()
        if summary is not None:
            self._pending = summary
        if self._pending is None:
            return []
        if self._last is not None and now - self._last < self.interval:
            return []
        self._last = now
        return self.flush()

    def flush(self) -> list[Notice]:
        """Release the kept summary, whatever the time."""
        pending, self._pending = self._pending, None
        return [] if pending is None else [ProgressNotice(summary=pending)]


def _short(text: str, limit: int = SUMMARY_CHARS) -> str:
    line = " ".join(text.split())
    return redact(line if len(line) <= limit else line[: limit - 1] + "…")


_TOOL_ARG_KEYS = ("command", "file_path", "path", "pattern", "url", "query", "description")


def _tool_summary(name: str, tool_input: Any) -> str:
    if isinstance(tool_input, dict):
        for key in _TOOL_ARG_KEYS:
            value = tool_input.get(key)
            if isinstance(value, str) and value:
                return _short(f"{name}: {value}")
    return _short(name)


def _assistant_summary(raw: msgspec.Raw) -> str | None:
    if not raw:
        return None
    try:
        message = _message_decoder.decode(raw)
    except (msgspec.DecodeError, msgspec.ValidationError):
        return None
    if isinstance(message.content, str):
        return _short(message.content) if message.content.strip() else None
    parts: list[str] = []
    for block in message.content:
        if block.type == "text" and isinstance(block.text, str) and block.text.strip():
            parts.append(_short(block.text))
        elif block.type in ("tool_use", "server_tool_use") and isinstance(block.name, str):
            parts.append(_tool_summary(block.name, block.input))
    return _short("; ".join(parts)) if parts else None


def _int(value: Any) -> int | None:
    return value if isinstance(value, int) and not isinstance(value, bool) else None


class StreamParser:
    """Reads one attempt's stdout lines; see the module docstring."""

    def __init__(
        self,
        session_id: str | None = None,
        throttle: ProgressThrottle | None = None,
        wall_clock: Callable[[], float] = time.time,
        usage_throttle: UsageThrottle | None = None,
    ) -> None:
        self.session_id = session_id
        self.throttle = throttle or ProgressThrottle()
        self.meter = UsageMeter()  # the live estimate, until the result line's totals
        self.usage_throttle = usage_throttle or UsageThrottle()
        self._wall_clock = wall_clock
        self.result: _Line | None = None
        self.api_error: _Line | None = None  # the last synthetic assistant error message
        self.rate_limit_reset: float | None = None  # from a rejected rate_limit_event
        self.lines_seen = 0
        self.other_lines: deque[str] = deque(maxlen=5)  # the last non-JSON lines (stderr)

    def feed(self, line: str | bytes) -> list[Notice]:
        """The notices one stdout line yields (none for blank, non-JSON or unknown lines)."""
        stripped = line.strip()
        if not stripped:
            return self.throttle.offer(None)
        if stripped[:1] not in ("{", b"{"):
            text = stripped if isinstance(stripped, str) else stripped.decode("utf-8", "replace")
            self.other_lines.append(text[:_REASON_CHARS])
            # Claude Code writes only JSON to stdout: other text is its stderr, merged in the log
            return [*self.throttle.offer(None), OutputLine(stream="stderr", text=redact(text))]
        try:
            parsed = _line_decoder.decode(stripped)
        except (msgspec.DecodeError, msgspec.ValidationError):
            return self.throttle.offer(None)
        self.lines_seen += 1
        if parsed.session_id:
            self.session_id = parsed.session_id
        match parsed.type, parsed.subtype:
            case "system", "init":
                tools = [t for t in parsed.tools or [] if isinstance(t, str)]
                notice = SessionNotice(
                    session_id=parsed.session_id or self.session_id or "",
                    model=parsed.model,
                    tools=tools,
                )
                return [*self.throttle.flush(), notice]
            case "system", "api_retry":
                return self.throttle.offer(self._retry_summary(parsed))
            case "assistant", _:
                if parsed.is_api_error_message:
                    self.api_error = parsed
                    return self.throttle.offer(None)
                progress = self.throttle.offer(_assistant_summary(parsed.message))
                return progress + self._count_usage(parsed.message)
            case "rate_limit_event", _:
                self._note_rate_limit(parsed.rate_limit_info or {})
                return self.throttle.offer(None)
            case "result", _:
                self.result = parsed
                self.usage_throttle.drop()  # the CLI's own totals replace the estimate
                return [*self.throttle.flush(), self._final_usage(parsed)]
            case _:
                return self.throttle.offer(None)

    def flush(self) -> list[Notice]:
        """Notices still held back by the throttles (call once the output has ended)."""
        return [*self.throttle.flush(), *self.usage_throttle.flush()]

    def _count_usage(self, message: msgspec.Raw) -> list[Notice]:
        unpriced = self.meter.add(message)
        notices: list[Notice] = []
        if unpriced is not None:
            summary = _short(f"no known price for model {unpriced}: its cost is known at the end")
            notices.append(ProgressNotice(summary=summary))
        if self.result is None and self.meter.messages:
            notices += self.usage_throttle.offer(self.meter.totals())
        return notices

    def _final_usage(self, result: _Line) -> UsageNotice:
        input_tokens, output_tokens = _tokens(result)
        return self.meter.final(input_tokens, output_tokens, float(result.total_cost_usd or 0))

    @staticmethod
    def _retry_summary(line: _Line) -> str:
        status = _int(line.error_status)
        what = f"{line.error or 'error'}" + (f" ({status})" if status else "")
        return _short(f"API retry {line.attempt}/{line.max_retries}: {what}")

    def _note_rate_limit(self, info: dict[str, Any]) -> None:
        if info.get("status") == "rejected":
            resets = info.get("resetsAt")
            if isinstance(resets, int | float) and not isinstance(resets, bool):
                self.rate_limit_reset = float(resets)

    def finish(
        self, exit_code: int | None, signal: int | None = None, stderr_tail: str = ""
    ) -> Outcome:
        """Classify the attempt once the process has ended."""
        if signal is None and exit_code is not None and exit_code > 128:
            signal = exit_code - 128  # a shell-style status (143 = SIGTERM)
        base: dict[str, Any] = {
            "exit_code": exit_code,
            "signal": signal,
            "session_id": self.session_id,
        }
        result = self.result
        usage = self.meter.totals() if result is None else self._final_usage(result)
        base |= {
            "cost_usd": usage.cost_usd,
            "input_tokens": usage.input_tokens,
            "output_tokens": usage.output_tokens,
        }
        if result is None:  # killed or crashed: what it spent until then is kept
            return self._without_result(base, exit_code, signal, stderr_tail)
        base["denials"] = denials = read_denials(result.permission_denials)
        if result.is_error is False:
            text = result.result if isinstance(result.result, str) else None
            if denials:  # "success", but the agent was refused what it tried: the work is undone
                total = len(result.permission_denials)
                reason = denied_reason(denials, total)
                return Outcome(
                    ok=False, failure="permission_denied", reason=reason, result=text, **base
                )
            return Outcome(ok=True, result=text, **base)
        failure, reset_at = self._classify_error(result)
        return Outcome(ok=False, failure=failure, reset_at=reset_at, reason=_reason(result), **base)

    def _without_result(
        self, base: dict[str, Any], exit_code: int | None, signal: int | None, stderr_tail: str
    ) -> Outcome:
        lines = stderr_tail.strip().splitlines() or list(self.other_lines)
        tail = _short(lines[-1], _REASON_CHARS) if lines else ""
        if signal is not None:
            try:
                name = signals.Signals(signal).name
            except ValueError:
                name = f"signal {signal}"
            reason = f"killed by {name} before a result"
            return Outcome(ok=False, failure="crash", reason=reason, **base)
        if exit_code == 0:
            reason = "exited without a result line"
            return Outcome(ok=False, failure="crash", reason=reason, **base)
        reason = tail or f"exited with status {exit_code} before a result"
        return Outcome(ok=False, failure="exit", reason=reason, **base)

    def _classify_error(self, result: _Line) -> tuple[FailureClass, float | None]:
        subtype = result.subtype or ""
        terminal = result.terminal_reason or ""
        if subtype == "error_max_turns" or terminal == "max_turns":
            return "max_turns", None
        if subtype == "error_max_budget_usd" or terminal == "budget_exhausted":
            return "max_budget", None
        text = _reason(result)
        if self.rate_limit_reset is not None:
            return "rate_limited", self.rate_limit_reset
        reset = parse_reset_time(text, self._wall_clock())
        if reset is not None:
            return "rate_limited", reset
        if subtype == "error_during_execution":
            if "No conversation found" in text:
                return "invalid", None
            return "crash", None
        status = _int(result.api_error_status)
        category = None
        if self.api_error is not None:
            status = status or _int(self.api_error.api_error_status)
            category = self.api_error.error if isinstance(self.api_error.error, str) else None
        if terminal == "api_error" or self.api_error is not None or status is not None:
            return classify_api_error(status, category, text), None
        return "exit", None


def classify_api_error(status: int | None, category: str | None, text: str) -> FailureClass:
    """The failure class of a model-API error, from its HTTP status, category and text."""
    if status in (401, 403) or category in ("authentication_failed", "oauth_org_not_allowed"):
        return "auth"
    if category == "billing_error" or text.startswith("Not logged in"):
        return "auth"
    if status in (400, 404, 413, 422) or category in ("invalid_request", "model_not_found"):
        return "invalid"
    return "api_error"  # 429, 529, 5xx, connection refused, timeouts, unknown


def _tokens(line: _Line) -> tuple[int, int]:
    """Input and output tokens: the per-model totals if present (they include subagents)."""
    model_usage = line.modelUsage or {}
    if model_usage:
        inputs = sum(_int(m.get("inputTokens")) or 0 for m in model_usage.values())
        outputs = sum(_int(m.get("outputTokens")) or 0 for m in model_usage.values())
        return inputs, outputs
    usage = line.usage or {}
    return _int(usage.get("input_tokens")) or 0, _int(usage.get("output_tokens")) or 0


def _reason(result: _Line) -> str:
    """The failure text in the SDK's priority: errors[], then result, then subtype, then status."""
    texts = [str(e) for e in result.errors or [] if e]
    if texts:
        text = "; ".join(texts)
    elif isinstance(result.result, str) and result.result:
        text = result.result
    elif result.subtype:
        text = result.subtype
    else:
        text = f"API error {result.api_error_status}"
    return _short(text, _REASON_CHARS)
