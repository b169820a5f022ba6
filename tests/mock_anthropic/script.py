"""What the mock API answers: one scripted reply per model turn, and their SSE rendering.

A reply is a small frozen value; `render` turns it into the exact byte stream the real
Messages API sends (`event:`/`data:` pairs, `message_start` … `message_stop`), or into an
error response with the real API's JSON error body and headers.
"""

from __future__ import annotations

import json
import uuid
from dataclasses import dataclass, field
from typing import Any

__all__ = [
    "DEFAULT_MODEL",
    "ApiError",
    "Hang",
    "Reply",
    "Stall",
    "Text",
    "ToolUse",
    "Usage",
    "message_body",
    "sse_events",
]

DEFAULT_MODEL = "claude-sonnet-4-5-20250929"


@dataclass(frozen=True, kw_only=True)
class Usage:
    """Token counts the mock reports for one turn (the CLI prices them to compute cost)."""

    input_tokens: int = 1200
    output_tokens: int = 20
    cache_read_input_tokens: int = 0
    cache_creation_input_tokens: int = 0


@dataclass(frozen=True)
class Text:
    """A plain text answer that ends the turn."""

    text: str
    usage: Usage = field(default_factory=Usage)


@dataclass(frozen=True)
class ToolUse:
    """A tool call (optionally preceded by some text); the CLI runs the tool and asks again."""

    name: str
    input: dict[str, Any]
    text: str | None = None
    usage: Usage = field(default_factory=Usage)


@dataclass(frozen=True)
class ApiError:
    """An HTTP error with the real API's body; `retry_after` becomes the retry-after header."""

    status: int
    type: str
    message: str
    retry_after: float | None = None
    headers: dict[str, str] = field(default_factory=dict)

    @classmethod
    def rate_limited(cls, retry_after: float | None = 0) -> ApiError:
        return cls(
            429,
            "rate_limit_error",
            "Number of request tokens has exceeded your per-minute rate limit",
            retry_after,
        )

    @classmethod
    def overloaded(cls) -> ApiError:
        return cls(529, "overloaded_error", "Overloaded")

    @classmethod
    def server_error(cls) -> ApiError:
        return cls(500, "api_error", "Internal server error")

    @classmethod
    def unauthorized(cls) -> ApiError:
        return cls(401, "authentication_error", "invalid x-api-key")

    @classmethod
    def bad_request(cls, message: str = "messages: invalid request") -> ApiError:
        return cls(400, "invalid_request_error", message)

    def body(self) -> bytes:
        error = {"type": self.type, "message": self.message}
        return json.dumps({"type": "error", "error": error}).encode()


@dataclass(frozen=True)
class Hang:
    """Accept the request and answer nothing until the mock is closed (or `seconds` pass)."""

    seconds: float = 3600.0


@dataclass(frozen=True)
class Stall:
    """Stream a text answer up to the end of its first block, then send nothing more until the
    mock is closed (or `seconds` pass): a turn cut off mid-message, whose usage the CLI has
    printed but whose end (and the CLI's budget check after it) never comes."""

    text: str
    usage: Usage = field(default_factory=Usage)
    seconds: float = 3600.0


Reply = Text | ToolUse | ApiError | Hang | Stall


def _blocks(reply: Text | ToolUse) -> list[dict[str, Any]]:
    if isinstance(reply, Text):
        return [{"type": "text", "text": reply.text}]
    blocks: list[dict[str, Any]] = []
    if reply.text:
        blocks.append({"type": "text", "text": reply.text})
    tool_id = "toolu_01" + uuid.uuid4().hex[:22]
    blocks.append({"type": "tool_use", "id": tool_id, "name": reply.name, "input": reply.input})
    return blocks


def _usage(usage: Usage) -> dict[str, Any]:
    return {
        "input_tokens": usage.input_tokens,
        "cache_creation_input_tokens": usage.cache_creation_input_tokens,
        "cache_read_input_tokens": usage.cache_read_input_tokens,
        "output_tokens": usage.output_tokens,
        "service_tier": "standard",
    }


def message_body(reply: Text | ToolUse, model: str) -> dict[str, Any]:
    """The non-streaming response to `reply`."""
    return {
        "id": "msg_01" + uuid.uuid4().hex[:22],
        "type": "message",
        "role": "assistant",
        "model": model,
        "content": _blocks(reply),
        "stop_reason": "tool_use" if isinstance(reply, ToolUse) else "end_turn",
        "stop_sequence": None,
        "usage": _usage(reply.usage),
    }


def _event(name: str, data: dict[str, Any]) -> bytes:
    return f"event: {name}\ndata: {json.dumps(data)}\n\n".encode()


def sse_events(reply: Text | ToolUse, model: str) -> list[bytes]:
    """The streaming response to `reply`, one SSE event per item, as the real API sends it."""
    message = message_body(reply, model)
    blocks, stop_reason = message["content"], message["stop_reason"]
    start = {**message, "content": [], "stop_reason": None}
    start["usage"] = {**start["usage"], "output_tokens": 1}
    events = [
        _event("message_start", {"type": "message_start", "message": start}),
        _event("ping", {"type": "ping"}),
    ]
    for index, block in enumerate(blocks):
        if block["type"] == "text":
            empty: dict[str, Any] = {"type": "text", "text": ""}
            words = block["text"].split(" ")
            deltas = [
                {"type": "text_delta", "text": w + (" " if i < len(words) - 1 else "")}
                for i, w in enumerate(words)
            ]
        else:
            empty = {**block, "input": {}}
            text = json.dumps(block["input"])
            cut = len(text) // 2
            deltas = [
                {"type": "input_json_delta", "partial_json": part}
                for part in (text[:cut], text[cut:])
            ]
        events.append(
            _event(
                "content_block_start",
                {"type": "content_block_start", "index": index, "content_block": empty},
            )
        )
        events.extend(
            _event(
                "content_block_delta", {"type": "content_block_delta", "index": index, "delta": d}
            )
            for d in deltas
        )
        events.append(_event("content_block_stop", {"type": "content_block_stop", "index": index}))
    events.append(
        _event(
            "message_delta",
            {
                "type": "message_delta",
                "delta": {"stop_reason": stop_reason, "stop_sequence": None},
                "usage": {"output_tokens": message["usage"]["output_tokens"]},
            },
        )
    )
    events.append(_event("message_stop", {"type": "message_stop"}))
    return events
