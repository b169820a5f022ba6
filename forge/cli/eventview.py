"""Log entries as people read them: an event's tag and a one-line summary of its fields."""

from __future__ import annotations

from collections.abc import Collection, Iterator

import msgspec

from events.redact import redact, redact_value
from events.store import EventStore, LogEntry
from events.task_index import TaskIndex
from events.types import Event, TaskSubmitted

__all__ = ["details", "entries", "matches", "tag_of", "task_history"]


def tag_of(event: Event) -> str:
    return str(type(event).__struct_config__.tag)


def details(event: Event, skip_task: bool = False) -> str:
    """`name=value` pairs of an event's fields (secrets masked, long values shortened)."""
    if isinstance(event, TaskSubmitted):
        spec = event.spec
        what = redact(" ".join(spec.command) if spec.command else (spec.prompt or ""))
        head = "" if skip_task else f"task_id={event.task_id} "
        return redact(f"{head}runtime={spec.runtime} priority={spec.priority} {what[:80]!r}")
    parts = []
    for name in event.__struct_fields__:
        if name == "at" or (skip_task and name == "task_id"):
            continue
        value = redact_value(getattr(event, name), name)
        if value in (None, "", [], {}):
            continue
        text = msgspec.json.encode(value).decode() if not isinstance(value, str) else value
        parts.append(f"{name}={text[:80]}")
    return redact(" ".join(parts))


def matches(event: Event, types: Collection[str], task_id: str | None) -> bool:
    if types and tag_of(event) not in types:
        return False
    return task_id is None or getattr(event, "task_id", None) == task_id


def entries(store: EventStore, start: str = "-", end: str = "+") -> Iterator[LogEntry]:
    """Every decodable entry in [start, end], page by page."""
    for page in store.pages(start, end):
        for entry_id, _, event in page:
            yield LogEntry(entry_id, event)


def task_history(store: EventStore, task_id: str) -> list[LogEntry]:
    """Every event about one task, in log order (read through the per-task index)."""
    return TaskIndex(store).entries(task_id)
