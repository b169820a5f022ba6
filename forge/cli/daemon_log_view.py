"""The daemon's JSON log lines as console lines: `time level component event key=value ...`.

The daemon writes JSON lines (structlog's JSONRenderer, `forge.log`). A person at a terminal
reads them as one line each: the local time, the level, the component, the event, then the
other fields as `key=value`; an exception's traceback follows, indented. A line that is not a
JSON object (what the interpreter printed before logging was set up) is shown as it is.
Every line is redacted again.
"""

from __future__ import annotations

import datetime as dt
import json
from typing import Any

import click

from events.redact import redact, redact_value

__all__ = ["render_log_line"]

_LEVEL_COLOURS = {"debug": "blue", "info": "green", "warning": "yellow", "error": "red"}
_FIRST = ("timestamp", "level", "component", "event", "exception", "logger")


def _time(value: Any) -> str:
    if not isinstance(value, str):
        return "-"
    try:
        moment = dt.datetime.fromisoformat(value.replace("Z", "+00:00"))
    except ValueError:
        return value
    return moment.astimezone().strftime("%Y-%m-%d %H:%M:%S.%f")[:-3]


def _value(value: Any) -> str:
    text = value if isinstance(value, str) else json.dumps(value, ensure_ascii=False, default=str)
    if not text or any(c in text for c in ' "=\n'):
        return json.dumps(text, ensure_ascii=False)  # quoted, so that pairs stay apart
    return text


def render_log_line(line: str, colour: bool = False) -> list[str]:
    """One log line as console lines (one, plus a traceback's if it carries one)."""
    stripped = line.strip()
    try:
        data = json.loads(stripped) if stripped.startswith("{") else None
    except ValueError:
        data = None
    if not isinstance(data, dict):
        return [redact(line)]
    data = redact_value(data)
    level = str(data.get("level", "-"))
    shown = f"{level:<7}"
    if colour:
        shown = click.style(shown, fg=_LEVEL_COLOURS.get(level), bold=level == "error")
    component = str(data.get("component") or data.get("logger") or "-")
    event = str(data.get("event", ""))
    pairs = " ".join(f"{k}={_value(v)}" for k, v in data.items() if k not in _FIRST)
    component = f"{component:<24}"
    if colour:
        component, event = click.style(component, fg="cyan"), click.style(event, bold=True)
    head = f"{_time(data.get('timestamp'))} {shown} {component} {event}"
    out = [f"{head}  {pairs}".rstrip() if pairs else head]
    exception = data.get("exception")
    if isinstance(exception, str) and exception:
        out += ["    " + part for part in exception.splitlines()]
    return out
