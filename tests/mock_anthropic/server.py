"""A mock of the Anthropic Messages API on 127.0.0.1, for driving the real `claude` binary.

`MockAnthropic` serves `POST /v1/messages` (streaming SSE or plain JSON, as asked), answers
`count_tokens` and anything else the CLI probes with a harmless 200, and records every request
(credentials dropped) so that tests can see what the CLI sent. Model turns are answered from a
script: each conversation turn takes the next `Reply`; once the script is exhausted the
`responder` (a function of the request body) answers, or else the `default` reply. Requests
that are not conversation turns (side calls without tools, such as a title generation) get a
short text and do not use up the script.
"""

from __future__ import annotations

import json
import threading
import time
from collections.abc import Callable, Iterable
from dataclasses import dataclass, field
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from typing import Any

from tests.mock_anthropic.script import (
    DEFAULT_MODEL,
    ApiError,
    Hang,
    Reply,
    Stall,
    Text,
    message_body,
    sse_events,
)

__all__ = ["MockAnthropic", "Recorded"]

_SECRET_HEADERS = frozenset({"x-api-key", "authorization"})


@dataclass(frozen=True)
class Recorded:
    """One request the mock received (the credential headers are not kept)."""

    method: str
    path: str
    headers: dict[str, str]
    body: Any
    turn: bool  # a conversation turn (it used up a scripted reply)
    at: float = field(default_factory=time.time)
    reply: str = ""


class MockAnthropic:
    """The mock API server; use as a context manager, or call `close()`."""

    def __init__(
        self,
        replies: Iterable[Reply] = (),
        default: Reply | None = None,
        responder: Callable[[dict[str, Any]], Reply] | None = None,
    ) -> None:
        self.default: Reply = default or Text("Done.")
        self.responder = responder  # answers turns the script does not (given the request body)
        self.requests: list[Recorded] = []
        self._script: list[Reply] = list(replies)
        self._lock = threading.Lock()
        self._closing = threading.Event()
        self._server = ThreadingHTTPServer(("127.0.0.1", 0), _handler_for(self))
        self._server.daemon_threads = True
        self._thread = threading.Thread(
            target=self._server.serve_forever, name="mock-anthropic", daemon=True
        )
        self._thread.start()

    @property
    def url(self) -> str:
        host, port = self._server.server_address[:2]
        return f"http://{host!s}:{port}"

    def script(self, *replies: Reply) -> None:
        """Queue more replies for the next conversation turns."""
        with self._lock:
            self._script.extend(replies)

    @property
    def turns(self) -> list[Recorded]:
        """The conversation turns received so far (requests that took a scripted reply)."""
        with self._lock:
            return [r for r in self.requests if r.turn]

    def wait_for_turns(self, count: int, timeout: float = 30.0) -> list[Recorded]:
        """Block until `count` turns have arrived; raise TimeoutError otherwise."""
        deadline = time.monotonic() + timeout
        while len(self.turns) < count:
            if time.monotonic() > deadline:
                raise TimeoutError(f"{len(self.turns)} of {count} turns after {timeout}s")
            self._closing.wait(0.05)
        return self.turns

    def close(self) -> None:
        self._closing.set()
        self._server.shutdown()
        self._server.server_close()
        self._thread.join(timeout=5)

    def __enter__(self) -> MockAnthropic:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()

    def _next_reply(self, body: Any) -> tuple[Reply, bool]:
        if not (isinstance(body, dict) and body.get("tools")):
            return Text("Ok."), False
        with self._lock:
            if self._script:
                return self._script.pop(0), True
            responder = self.responder
        if responder is not None:
            return responder(body), True
        return self.default, True

    def _record(self, request: Recorded) -> None:
        with self._lock:
            self.requests.append(request)


def _handler_for(mock: MockAnthropic) -> type[BaseHTTPRequestHandler]:
    class Handler(_Handler):
        owner = mock

    return Handler


class _Handler(BaseHTTPRequestHandler):
    owner: MockAnthropic
    protocol_version = "HTTP/1.1"
    server_version = "mock-anthropic/1"

    def log_message(self, format: str, *args: Any) -> None:
        """Quiet: every request is recorded on the mock instead."""

    def _body(self) -> Any:
        length = int(self.headers.get("content-length") or 0)
        raw = self.rfile.read(length) if length else b""
        try:
            return json.loads(raw) if raw else None
        except ValueError:
            return raw.decode("utf-8", "replace")

    def _headers(self) -> dict[str, str]:
        return {k.lower(): v for k, v in self.headers.items() if k.lower() not in _SECRET_HEADERS}

    def _send_json(self, status: int, payload: bytes, extra: dict[str, str] | None = None) -> None:
        self.send_response(status)
        self.send_header("content-type", "application/json")
        self.send_header("content-length", str(len(payload)))
        self.send_header("request-id", "req_011CMock" + format(id(payload) & 0xFFFFFFFF, "08x"))
        for name, value in (extra or {}).items():
            self.send_header(name, value)
        self.end_headers()
        self.wfile.write(payload)

    def do_HEAD(self) -> None:
        self._record(None, turn=False)
        self.send_response(200)
        self.send_header("content-length", "0")
        self.end_headers()

    def do_GET(self) -> None:
        self._record(None, turn=False)
        self._send_json(200, b"{}")

    def do_POST(self) -> None:
        body = self._body()
        path = self.path.split("?", 1)[0]
        if path.endswith("/count_tokens"):
            self._record(body, turn=False, reply="count_tokens")
            self._send_json(200, json.dumps({"input_tokens": 1200}).encode())
            return
        if not path.endswith("/v1/messages"):
            self._record(body, turn=False, reply="other")
            self._send_json(200, b"{}")
            return
        reply, turn = self.owner._next_reply(body)
        self._record(body, turn=turn, reply=type(reply).__name__)
        model = body.get("model", DEFAULT_MODEL) if isinstance(body, dict) else DEFAULT_MODEL
        if isinstance(reply, Hang):
            self.owner._closing.wait(reply.seconds)
            self.close_connection = True
            return
        if isinstance(reply, Stall):
            events = sse_events(Text(reply.text, reply.usage), model)
            cut = next(i for i, e in enumerate(events) if b"content_block_stop" in e) + 1
            self._stream(events[:cut], end=False)
            self.owner._closing.wait(reply.seconds)
            self.close_connection = True
            return
        if isinstance(reply, ApiError):
            extra = dict(reply.headers)
            if reply.retry_after is not None:
                extra["retry-after"] = f"{reply.retry_after:g}"
            self._send_json(reply.status, reply.body(), extra)
            return
        if isinstance(body, dict) and body.get("stream"):
            self._stream(sse_events(reply, model))
        else:
            self._send_json(200, json.dumps(message_body(reply, model)).encode())

    def _stream(self, events: list[bytes], end: bool = True) -> None:
        self.send_response(200)
        self.send_header("content-type", "text/event-stream")
        self.send_header("cache-control", "no-cache")
        self.send_header("transfer-encoding", "chunked")
        self.end_headers()
        for event in events:
            self.wfile.write(f"{len(event):x}\r\n".encode() + event + b"\r\n")
            self.wfile.flush()
        if end:
            self.wfile.write(b"0\r\n\r\n")

    def _record(self, body: Any, *, turn: bool, reply: str = "") -> None:
        self.owner._record(
            Recorded(
                method=self.command,
                path=self.path,
                headers=self._headers(),
                body=body,
                turn=turn,
                reply=reply,
            )
        )
