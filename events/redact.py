"""Secret redaction for anything that leaves the process: log lines, events, CLI output.

Two nets, both applied to every string:

* known secret *values* (registered at start-up from the environment and the settings) are
  replaced wherever they occur, whatever surrounds them;
* secret *shapes* are replaced even when the value was never registered: the password in a
  URL's userinfo, Anthropic-style keys, and `name=value` pairs whose name says it is secret.

Mapping keys whose name says they hold a secret have their whole value replaced.
"""

from __future__ import annotations

import re
import threading
from collections.abc import Iterable, Mapping
from typing import Any

__all__ = [
    "MASK",
    "forget_secrets",
    "is_secret_name",
    "redact",
    "redact_url",
    "redact_value",
    "register_secrets",
]

MASK = "***"

_SECRET_NAME = re.compile(
    r"(password|passwd|\bpass\b|secret|token(?!s)|api[_-]?key|credential|private[_-]?key|authorization)",
    re.IGNORECASE,
)
_URL_USERINFO = re.compile(
    r"(?<![a-zA-Z0-9+.-])(?P<scheme>[a-zA-Z][a-zA-Z0-9+.-]*://)(?P<user>[^:/@\s]*):(?P<pw>[^@\s/]+)@"
)
_KEY_SHAPES = re.compile(
    r"\b(sk-ant-[A-Za-z0-9_-]{6,}|sk-[A-Za-z0-9_-]{20,}|gh[pousr]_[A-Za-z0-9]{20,})"
)
_ASSIGNMENT = re.compile(
    r"(?<![A-Za-z0-9_.-])(?P<name>[A-Za-z0-9_.-]*(?:password|passwd|secret|token(?!s)|api[_-]?key)[A-Za-z0-9_]*)"
    r"(?P<sep>\s*[=:]\s*)(?P<quote>[\"']?)(?P<value>[^\s\"',;&]+)",
    re.IGNORECASE,
)

_MIN_SECRET_LEN = 6  # shorter values would redact ordinary words
_lock = threading.Lock()
_known: frozenset[str] = frozenset()
_known_pattern: re.Pattern[str] | None = None


def register_secrets(values: Iterable[str]) -> None:
    """Remember secret values so that they are masked wherever they later appear."""
    global _known, _known_pattern  # noqa: PLW0603 - one process-wide registry, swapped atomically
    with _lock:
        merged = _known | {v for v in values if v and len(v) >= _MIN_SECRET_LEN}
        if merged == _known:
            return
        _known = frozenset(merged)
        ordered = sorted(_known, key=len, reverse=True)
        _known_pattern = re.compile("|".join(re.escape(v) for v in ordered))


def forget_secrets() -> None:
    """Drop every registered secret value (tests use this to start clean)."""
    global _known, _known_pattern  # noqa: PLW0603 - one process-wide registry, swapped atomically
    with _lock:
        _known = frozenset()
        _known_pattern = None


def is_secret_name(name: str) -> bool:
    """Tell whether a field or variable name says that its value is a secret."""
    return bool(_SECRET_NAME.search(name))


def redact(text: str) -> str:
    """Return `text` with every known secret value and every secret shape masked."""
    pattern = _known_pattern
    if pattern is not None:
        text = pattern.sub(MASK, text)
    text = _URL_USERINFO.sub(lambda m: f"{m['scheme']}{m['user']}:{MASK}@", text)
    text = _KEY_SHAPES.sub(MASK, text)
    return _ASSIGNMENT.sub(lambda m: f"{m['name']}{m['sep']}{m['quote']}{MASK}", text)


def redact_url(url: str) -> str:
    """Return a connection URL with its password masked (user names are kept)."""
    return redact(url)


def redact_value(value: Any, key: str | None = None) -> Any:
    """Redact a value of any JSON-like shape; a secret-named `key` masks the whole value."""
    if key is not None and is_secret_name(key) and value not in (None, "", b""):
        if isinstance(value, str) and "://" in value:
            return redact_url(value)
        return MASK
    if isinstance(value, str):
        return redact(value)
    if isinstance(value, bytes):
        return redact(value.decode("utf-8", "replace"))
    if isinstance(value, Mapping):
        return {k: redact_value(v, str(k)) for k, v in value.items()}
    if isinstance(value, list | tuple):
        return [redact_value(v) for v in value]
    return value
