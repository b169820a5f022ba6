"""A scriptable mock of the Anthropic Messages API, for running the real Claude Code CLI offline."""

from tests.mock_anthropic.script import (
    DEFAULT_MODEL,
    ApiError,
    Hang,
    Reply,
    Stall,
    Text,
    ToolUse,
    Usage,
)
from tests.mock_anthropic.server import MockAnthropic, Recorded

__all__ = [
    "DEFAULT_MODEL",
    "ApiError",
    "Hang",
    "MockAnthropic",
    "Recorded",
    "Reply",
    "Stall",
    "Text",
    "ToolUse",
    "Usage",
]
