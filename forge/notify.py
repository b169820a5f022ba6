"""Handing the log's events to a command or a webhook, through a consumer group.

`forward` reads a `GroupConsumer` and hands each event whose type matches one of the globs to a
handler — `ExecHandler` (a shell command, the event as JSON on stdin) or `WebhookHandler` (an
HTTP POST of the same JSON) — at least once: an event is acknowledged only after its handler
succeeded; a failing handler is retried with exponential backoff, and after its last try the
event is copied to the group's dead-letter stream (and acknowledged). Events of other types are
acknowledged unhandled. `stop` ends it after the event at hand; what was read and not handled
stays pending and is the first thing a consumer of the same name gets next time.
"""

from __future__ import annotations

import contextlib
import fnmatch
import os
import signal
import subprocess
import threading
import urllib.error
import urllib.request
from collections.abc import Callable, Iterable
from typing import Any
from urllib.parse import urlsplit

import msgspec

from events.consumer import Delivery, GroupConsumer
from events.errors import ForgeError
from events.redact import redact
from events.state import to_builtins
from events.types import EVENT_TYPES

__all__ = [
    "ExecHandler",
    "HandlerFailed",
    "Outcome",
    "WebhookHandler",
    "event_json",
    "forward",
    "matching_types",
]

MAX_BACKOFF = 60.0


class HandlerFailed(ForgeError):
    """Raised when a handler did not take an event (a non-zero exit, an HTTP error)."""


def event_json(delivery: Delivery) -> bytes:
    """The event as JSON: `{"id": <stream id>, "type": ..., <fields>}`, secrets masked."""
    return msgspec.json.encode({"id": delivery.id, **to_builtins(delivery.event)})


def _tag(delivery: Delivery) -> str:
    return str(type(delivery.event).__struct_config__.tag)


def matching_types(patterns: Iterable[str]) -> list[str]:
    """Every event type matched by the globs; raises ForgeError naming a glob that matches none."""
    found: set[str] = set()
    for pattern in patterns:
        hits = fnmatch.filter(EVENT_TYPES, pattern)
        if not hits:
            raise ForgeError(
                f"--type {pattern!r} matches no event type (see `forge events tail -h`)"
            )
        found.update(hits)
    return sorted(found)


class ExecHandler:
    """Runs `/bin/sh -c COMMAND` per event, in a session of its own (a Ctrl-C meant for the
    consumer does not reach it), the event as JSON on stdin and FORGE_EVENT_ID,
    FORGE_EVENT_TYPE, FORGE_EVENT_DELIVERY and FORGE_TASK_ID (when the event has a task) in its
    environment. Exit 0 is success; past `timeout` its whole session is killed."""

    def __init__(self, command: str, timeout: float, env: dict[str, str]) -> None:
        self.command = command
        self.timeout = timeout
        self.env = env

    def __call__(self, delivery: Delivery) -> None:
        env = self.env | {
            "FORGE_EVENT_ID": delivery.id,
            "FORGE_EVENT_TYPE": _tag(delivery),
            "FORGE_EVENT_DELIVERY": str(delivery.deliveries),
        }
        task_id = getattr(delivery.event, "task_id", None)
        if task_id:
            env["FORGE_TASK_ID"] = str(task_id)
        try:
            proc = subprocess.Popen(
                ["/bin/sh", "-c", self.command],
                stdin=subprocess.PIPE,
                stdout=subprocess.DEVNULL,
                stderr=subprocess.PIPE,
                env=env,
                start_new_session=True,
            )
        except OSError as e:
            raise HandlerFailed(f"cannot run the command: {e.strerror or e}") from None
        try:
            _, err = proc.communicate(event_json(delivery), timeout=self.timeout)
        except subprocess.TimeoutExpired:
            with contextlib.suppress(ProcessLookupError):
                os.killpg(proc.pid, signal.SIGKILL)
            proc.communicate()
            raise HandlerFailed(f"the command ran longer than {self.timeout:g} s") from None
        if proc.returncode != 0:
            last = err.decode(errors="replace").strip().splitlines()[-1:] or [""]
            detail = f": {redact(last[0])[:200]}" if last[0] else ""
            raise HandlerFailed(f"the command exited with status {proc.returncode}{detail}")


class WebhookHandler:
    """POSTs each event as JSON to an http(s) URL; any 2xx answer is success. The URL is never
    printed (chat webhooks carry their secret in it): messages name its host only."""

    def __init__(self, url: str, timeout: float) -> None:
        parts = urlsplit(url)
        if parts.scheme not in ("http", "https") or not parts.hostname:
            raise ForgeError("--webhook must be an http:// or https:// URL with a host")
        self.url = url
        self.host = parts.hostname
        self.timeout = timeout

    def __call__(self, delivery: Delivery) -> None:
        request = urllib.request.Request(  # noqa: S310 - the scheme is checked above
            self.url,
            data=event_json(delivery),
            method="POST",
            headers={
                "Content-Type": "application/json",
                "User-Agent": "forge-events-consume",
                "X-Forge-Event-Id": delivery.id,
                "X-Forge-Event-Type": _tag(delivery),
            },
        )
        try:
            with urllib.request.urlopen(request, timeout=self.timeout) as reply:  # noqa: S310
                reply.read(65536)
        except urllib.error.HTTPError as e:
            raise HandlerFailed(f"{self.host} answered HTTP {e.code}") from None
        except (urllib.error.URLError, OSError) as e:
            reason = getattr(e, "reason", e)
            raise HandlerFailed(f"{self.host} unreachable: {type(reason).__name__}") from None


class Outcome(msgspec.Struct, kw_only=True, frozen=True):
    """What became of one delivered event."""

    id: str
    type: str
    result: str  # delivered|dead_lettered|skipped (another type)
    tries: int = 0
    reason: str = ""


def _try(
    handler: Callable[[Delivery], None],
    delivery: Delivery,
    retries: int,
    backoff: float,
    stop: threading.Event,
) -> tuple[bool | None, int, str]:
    """(handled, tries, last reason); handled is None when told to stop between tries."""
    reason = ""
    for attempt in range(retries + 1):
        if attempt and stop.wait(min(MAX_BACKOFF, backoff * 2 ** (attempt - 1))):
            return None, attempt, reason
        try:
            handler(delivery)
        except HandlerFailed as e:
            reason = str(e)
            continue
        return True, attempt + 1, ""
    return False, retries + 1, reason


def forward(
    consumer: GroupConsumer,
    handler: Callable[[Delivery], None],
    types: list[str],
    stop: threading.Event,
    *,
    retries: int = 3,
    backoff: float = 1.0,
    report: Callable[[Outcome], Any] = lambda _: None,
    block_ms: int = 500,
) -> None:
    """Hand the group's events of `types` to `handler` until `stop` is set (see the module)."""
    wanted = set(types)
    while not stop.is_set():
        for delivery in consumer.read(block_ms):
            if stop.is_set():
                return  # the rest stays pending for the next start
            tag = _tag(delivery)
            if tag not in wanted:
                consumer.ack(delivery.id)
                continue
            handled, tries, reason = _try(handler, delivery, retries, backoff, stop)
            if handled is None:
                return
            if handled:
                consumer.ack(delivery.id)
                report(Outcome(id=delivery.id, type=tag, result="delivered", tries=tries))
            else:
                consumer.dead_letter(delivery.id, reason)
                report(
                    Outcome(
                        id=delivery.id, type=tag, result="dead_lettered", tries=tries, reason=reason
                    )
                )
