"""Submitting tasks: what a person asks for (flags or a tasks file, read by
`forge.task_request`) becomes validated `TaskSubmitted` events, appended in one atomic batch —
or nothing at all when anything is wrong.

Everything enters the log through `build_definition`, which refuses what an agent could not run
or a reader could not bear: NUL bytes, malformed environment names, non-finite or absurd
numbers, and oversized text (sizes are checked before any parsing).
"""

from __future__ import annotations

import math
import secrets
import time
from collections.abc import Sequence
from pathlib import Path
from typing import Any

import msgspec

from events.redact import is_secret_name, redact
from events.store import EventStore, redis_errors
from events.types import TaskDefinition, TaskSubmitted
from forge.errors import InvalidTask
from forge.isolation import resolve_isolation
from forge.permissions import resolve_policy
from forge.runtimes import available_runtimes
from forge.runtimes.container_engine import submitted_image
from forge.runtimes.workspace import is_git_repository
from forge.settings import Settings
from forge.task_request import MAX_TASKS_FILE_BYTES, TaskRequest, TasksFile, read_tasks_file

__all__ = [  # with the four names of forge.task_request it re-exports (benchmarks use them)
    "MAX_ARG_BYTES",
    "MAX_PROMPT_BYTES",
    "MAX_TASKS_FILE_BYTES",
    "SHELL",
    "PlannedTask",
    "TaskRequest",
    "TasksFile",
    "build_definition",
    "check_text",
    "new_task_id",
    "plan",
    "read_tasks_file",
    "submit",
]

MAX_PROMPT_BYTES = 256 * 1024
"""The largest prompt (or command, all arguments together) accepted, in UTF-8 bytes."""

MAX_ARG_BYTES = 128 * 1024 - 1
"""The largest single argument or `NAME=VALUE` environment entry: the kernel refuses longer
ones to `execve` (MAX_ARG_STRLEN, 128 KiB with the terminating NUL)."""

MAX_FIELD_BYTES = 4096  # a name, tag, path, model, runtime, idempotency key or `after` entry
MAX_ENTRIES = 1000  # tags, `after` entries or environment variables of one task
MAX_TIMEOUT = 30 * 24 * 3600.0  # seconds: a month per attempt
MAX_BUDGET_USD = 1_000_000.0

SHELL = "/bin/sh"
"""The shell that runs a command given as one string (`SHELL -c STRING`)."""


class PlannedTask(msgspec.Struct, kw_only=True):
    """A task ready to append: its new id and the event; `existing` when an idempotency key
    already named a task (then nothing is appended for it)."""

    index: int  # position in the request list
    task_id: str
    event: TaskSubmitted | None
    existing: bool = False


def new_task_id() -> str:
    """A fresh task id: `task-` and 16 random hex digits (64 bits: with 10, two of 200,000
    tasks shared an id about once in 50 runs, and the second was dropped as a duplicate)."""
    return f"task-{secrets.token_hex(8)}"


def _draw(count: int) -> list[str]:
    """`count` fresh task ids, no two alike."""
    ids: dict[str, None] = {}
    while len(ids) < count:
        ids[new_task_id()] = None
    return list(ids)


# -- validating ------------------------------------------------------------------------------


def _text(value: str, what: str, limit: int) -> int:
    """The UTF-8 size of `value`; raises InvalidTask if it is over `limit`, not encodable or
    holds a NUL byte (no process could receive it). The length is checked before anything else,
    so a huge value is refused at once."""
    if len(value) > limit:
        raise InvalidTask(f"{what} is {len(value)} characters; the limit is {_size(limit)}")
    try:
        size = len(value.encode("utf-8"))
    except UnicodeEncodeError:
        raise InvalidTask(f"{what} is not valid UTF-8 text") from None
    if size > limit:
        raise InvalidTask(f"{what} is {size} bytes; the limit is {_size(limit)}")
    if "\0" in value:
        raise InvalidTask(f"{what} contains a NUL byte")
    return size


def _size(limit: int) -> str:
    return f"{(limit + 1) // 1024} KiB" if limit >= 1023 else f"{limit} bytes"


def _entries(values: Sequence[Any] | dict[str, str], what: str) -> None:
    if len(values) > MAX_ENTRIES:
        raise InvalidTask(f"{what} has {len(values)} entries; the limit is {MAX_ENTRIES}")


def check_text(request: TaskRequest, where: str = "") -> None:
    """Refuse oversized, non-UTF-8 or NUL-holding text anywhere in `request`, and malformed
    environment entries; raises InvalidTask."""
    if request.prompt is not None:
        _text(request.prompt, f"{where}prompt", MAX_PROMPT_BYTES)
    if isinstance(request.command, str):
        _text(request.command, f"{where}command", MAX_ARG_BYTES)
    elif request.command is not None:
        _entries(request.command, f"{where}command")
        total = 0
        for arg in request.command:
            total += _text(arg, f"{where}an argument of the command", MAX_ARG_BYTES)
            if total > MAX_PROMPT_BYTES:
                raise InvalidTask(f"{where}command is over 256 KiB in all; the limit is 256 KiB")
    for field in (
        "name",
        "runtime",
        "model",
        "repo",
        "cwd",
        "idempotency_key",
        "permission_mode",
        "image",
        "network",
    ):
        value = getattr(request, field)
        if value is not None:
            _text(value, f"{where}{field}", MAX_FIELD_BYTES)
    for field in ("tags", "after", "allowed_tools", "disallowed_tools", "add_dirs"):
        values = getattr(request, field) or []
        _entries(values, f"{where}{field}")
        for value in values:
            _text(value, f"{where}an entry of {field}", MAX_FIELD_BYTES)
    _entries(request.env, f"{where}env")
    total = 0
    for name, value in request.env.items():
        _text(name, f"{where}env name {name[:40]!r}", MAX_FIELD_BYTES)
        if not name or "=" in name:
            raise InvalidTask(f"{where}env name {name!r} is empty or contains '='")
        total += _text(value, f"{where}env {name}", MAX_ARG_BYTES - len(name) - 1)
        if total > MAX_PROMPT_BYTES:
            raise InvalidTask(f"{where}env is over 256 KiB in all; the limit is 256 KiB")


def _number(value: float | None, what: str, low: float, high: float, open_low: bool) -> None:
    if value is None:
        return
    too_low = value <= low if open_low else value < low
    if not math.isfinite(value) or too_low or value > high:
        bound = ">" if open_low else ">="
        raise InvalidTask(f"{what} must be a number {bound} {low:g} and <= {high:g} (got {value})")


def _command(value: str | list[str] | None, where: str) -> list[str] | None:
    """The argv to run: a string is the shell form (`SHELL -c STRING`), a list the exec form."""
    if value is None:
        return None
    if isinstance(value, str):
        if not value.strip():
            raise InvalidTask(f"{where}command is empty")
        return [SHELL, "-c", value]
    if not value or not value[0]:
        raise InvalidTask(f"{where}command is empty")
    return list(value)


def _directory(value: str | None, what: str, where: str) -> str | None:
    if value is None:
        return None
    try:
        path = Path(value).expanduser().resolve()
        found = path.is_dir()
    except (OSError, RuntimeError):  # a name too long, a symlink loop
        found = False
    if not found:
        raise InvalidTask(f"{where}{what} {value}: no such directory")
    return str(path)


def build_definition(request: TaskRequest, settings: Settings, where: str = "") -> TaskDefinition:
    """The validated definition of one request (`where` prefixes every message)."""
    check_text(request, where)
    command = _command(request.command, where)
    prompt = request.prompt
    if prompt is not None and not prompt.strip():
        raise InvalidTask(f"{where}prompt is empty")
    runtime = request.runtime or (
        "shell" if command else "claude" if prompt is not None else settings.runtime.default
    )
    known = available_runtimes()
    if runtime not in known:
        raise InvalidTask(f"{where}unknown runtime {runtime!r} (known: {', '.join(known)})")
    if runtime == "shell" and command is None:
        raise InvalidTask(f"{where}the shell runtime needs a command (--command)")
    if runtime == "claude" and prompt is None:
        raise InvalidTask(f"{where}the claude runtime needs a prompt")
    image = submitted_image(runtime, command, request.image, settings.container, where)
    priority = 3 if request.priority is None else request.priority
    if not 1 <= priority <= 5:
        raise InvalidTask(f"{where}priority {priority} is not in 1-5 (1 is the highest)")
    attempts = settings.retry.max_attempts if request.max_attempts is None else request.max_attempts
    if not 1 <= attempts <= 100:
        raise InvalidTask(f"{where}max_attempts {attempts} is not in 1-100")
    _number(request.timeout, f"{where}timeout", 0, MAX_TIMEOUT, open_low=True)
    _number(request.budget_usd, f"{where}budget_usd", 0, MAX_BUDGET_USD, open_low=False)
    if any(not tag.strip() for tag in request.tags):
        raise InvalidTask(f"{where}a tag is empty")
    repo = _directory(request.repo, "repo", where)
    if repo is not None and not is_git_repository(repo):
        raise InvalidTask(f"{where}repo {request.repo} is not a git repository")
    cwd = _directory(request.cwd, "cwd", where)
    add_dirs = [_directory(d, "add_dir", where) or d for d in request.add_dirs or []]
    policy = resolve_policy(
        runtime=runtime,
        mode=request.permission_mode,
        allowed=request.allowed_tools,
        disallowed=request.disallowed_tools,
        add_dirs=add_dirs,
        locked=bool(request.locked),
        settings=settings,
        where=where,
    )
    isolation = resolve_isolation(
        runtime=runtime,
        sandbox=request.sandbox,
        network=request.network,
        memory=request.memory,
        cpus=request.cpus,
        pids=request.pids,
        settings=settings,
        where=where,
    )
    secret = sorted(
        name
        for name, value in request.env.items()
        if is_secret_name(name) or redact(value) != value
    )
    if secret:
        raise InvalidTask(
            f"{where}env {', '.join(secret)} looks secret, and task definitions are stored in "
            "the event log: give the daemon the variable and add its name to "
            "runtime.env_allowlist instead"
        )
    return TaskDefinition(
        runtime=runtime,
        command=command,
        prompt=prompt,
        priority=priority,
        tags=tuple(sorted(set(request.tags))),
        after=tuple(dict.fromkeys(request.after)),
        max_attempts=attempts,
        timeout=request.timeout,
        budget_usd=request.budget_usd,
        model=request.model,
        repo=repo,
        cwd=cwd,
        env={**request.env, **policy.env},
        idempotency_key=request.idempotency_key,
        name=request.name,
        retry_on_exit=bool(request.retry_on_exit),
        permission_mode=policy.permission_mode,
        allowed_tools=tuple(policy.allowed_tools),
        disallowed_tools=tuple(policy.disallowed_tools),
        add_dirs=tuple(policy.add_dirs),
        image=image,
        sandbox=isolation.sandbox,
        network=isolation.network,
        limits=isolation.limits,
    )


# -- planning and appending ------------------------------------------------------------------


_MOST_DRAWS = 5


def _redrawn(planned: Sequence[PlannedTask]) -> list[PlannedTask]:
    """The same batch under new ids (the dependencies on its own tasks following them)."""
    ours = [p.task_id for p in planned if p.event is not None]
    new = dict(zip(ours, _draw(len(ours)), strict=True))
    out: list[PlannedTask] = []
    for p in planned:
        if p.event is None:
            out.append(p)
            continue
        after = tuple(new.get(dep, dep) for dep in p.event.spec.after)
        spec = msgspec.structs.replace(p.event.spec, after=after)
        event = msgspec.structs.replace(p.event, task_id=new[p.task_id], spec=spec)
        out.append(msgspec.structs.replace(p, task_id=event.task_id, event=event))
    return out


def _existing_for_key(store: EventStore, key: str) -> str | None:
    with redis_errors("read idempotency keys"):
        raw: Any = store.client.hget(store.keys.idempotency, key)
    return None if raw is None else raw.decode()


def _ordered(names: dict[str, int], deps: list[list[str]]) -> list[int]:
    """Request indexes with in-batch dependencies first; raises InvalidTask on a cycle."""
    order: list[int] = []
    marks: dict[int, str] = {}

    def visit(i: int, path: list[int]) -> None:
        if marks.get(i) == "done":
            return
        if marks.get(i) == "visiting":
            cycle = [*path[path.index(i) :], i]
            raise InvalidTask("dependency cycle: " + " -> ".join(_label(names, j) for j in cycle))
        marks[i] = "visiting"
        for ref in deps[i]:
            if ref in names:
                visit(names[ref], [*path, i])
        marks[i] = "done"
        order.append(i)

    for i in range(len(deps)):
        visit(i, [])
    return order


def _label(names: dict[str, int], index: int) -> str:
    return next((n for n, i in names.items() if i == index), f"#{index + 1}")


def plan(
    store: EventStore, requests: Sequence[TaskRequest], settings: Settings, now: float | None = None
) -> list[PlannedTask]:
    """Validate `requests` and turn them into events, dependencies first (nothing is appended).

    `after` entries name tasks of the same batch or ids already in the log."""
    many = len(requests) > 1
    names: dict[str, int] = {}
    for i, request in enumerate(requests):
        if request.name is not None:
            if request.name in names:
                raise InvalidTask(f"task name {request.name!r} is used twice")
            names[request.name] = i
    definitions = [
        build_definition(r, settings, f"task {r.name or i + 1}: " if many else "")
        for i, r in enumerate(requests)
    ]
    order = _ordered(names, [list(d.after) for d in definitions])
    ids: dict[int, str] = {}
    existing: set[int] = set()
    drawn = iter(_draw(len(definitions)))
    for i, d in enumerate(definitions):
        key = d.idempotency_key
        found = _existing_for_key(store, key) if key else None
        ids[i] = found or next(drawn)
        if found:
            existing.add(i)
    at = time.time() if now is None else now
    planned: list[PlannedTask] = []
    for i in order:
        after = []
        for ref in definitions[i].after:
            if ref in names:
                after.append(ids[names[ref]])
            elif store.task_index(ref) is not None:
                after.append(ref)
            else:
                raise InvalidTask(f"after {ref!r}: unknown task id")
        spec = msgspec.structs.replace(definitions[i], after=after)
        event = None if i in existing else TaskSubmitted(at=at, task_id=ids[i], spec=spec)
        planned.append(PlannedTask(index=i, task_id=ids[i], event=event, existing=i in existing))
    return planned


def submit(store: EventStore, planned: Sequence[PlannedTask]) -> list[str]:
    """Append the planned tasks in one atomic batch; returns their ids (for a task whose
    idempotency key was taken meanwhile by another submitter, that task's id), in request
    order. A batch that would give a task an id the log knows already (64 random bits drawn
    again) is appended with new ids instead: never silently dropped as a duplicate."""
    for _ in range(_MOST_DRAWS):
        if store.append_new([p.event for p in planned if p.event is not None]) is not None:
            break
        planned = _redrawn(planned)
    else:
        raise InvalidTask(f"no free task id in {_MOST_DRAWS} draws")  # (not by chance)
    out: dict[int, str] = {}
    for p in planned:
        key = p.event.spec.idempotency_key if p.event is not None else None
        out[p.index] = (_existing_for_key(store, key) or p.task_id) if key else p.task_id
    return [out[i] for i in sorted(out)]
