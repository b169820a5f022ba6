"""Submitting tasks: what a person asks for (flags or a tasks file) becomes validated
`TaskSubmitted` events, appended in one atomic batch — or nothing at all when anything is wrong.

The tasks file is TOML: an optional `[defaults]` table and one `[[task]]` table per task, with
the fields of `TaskRequest`. `name` identifies a task within the file, so that `after` may name
other tasks of the same file (in any order; a cycle is refused) as well as ids of tasks already
in the log. `command` is a shell-like string (split with `shlex`, never run by a shell) or an
array of arguments. Relative `repo` and `cwd` paths are relative to the file's directory.
"""

from __future__ import annotations

import secrets
import shlex
import time
import tomllib
from collections.abc import Sequence
from pathlib import Path
from typing import Any

import msgspec

from events.redact import is_secret_name, redact
from events.store import EventStore, redis_errors
from events.types import TaskDefinition, TaskSubmitted
from forge.errors import InvalidTask
from forge.runtimes import available_runtimes
from forge.runtimes.workspace import is_git_repository
from forge.settings import Settings

__all__ = [
    "MAX_PROMPT_BYTES",
    "PlannedTask",
    "TaskRequest",
    "TasksFile",
    "build_definition",
    "new_task_id",
    "plan",
    "read_tasks_file",
    "submit",
]

MAX_PROMPT_BYTES = 256 * 1024
"""The largest prompt (or command, all arguments together) accepted, in UTF-8 bytes."""


class TaskRequest(msgspec.Struct, kw_only=True, forbid_unknown_fields=True):
    """One task as asked for: a `[[task]]` table, or the flags of `forge task submit`."""

    name: str | None = None
    command: str | list[str] | None = None
    prompt: str | None = None
    runtime: str | None = None
    priority: int | None = None
    after: list[str] = []
    tags: list[str] = []
    max_attempts: int | None = None
    timeout: float | None = None
    budget_usd: float | None = None
    model: str | None = None
    repo: str | None = None
    cwd: str | None = None
    env: dict[str, str] = {}
    idempotency_key: str | None = None


class TasksFile(msgspec.Struct, kw_only=True, forbid_unknown_fields=True):
    """A tasks file: defaults for every task, and the tasks."""

    defaults: TaskRequest = msgspec.field(default_factory=TaskRequest)
    task: list[TaskRequest] = []


class PlannedTask(msgspec.Struct, kw_only=True):
    """A task ready to append: its new id and the event; `existing` when an idempotency key
    already named a task (then nothing is appended for it)."""

    index: int  # position in the request list
    task_id: str
    event: TaskSubmitted | None
    existing: bool = False


def new_task_id() -> str:
    """A fresh task id: `task-` and 10 random hex digits."""
    return f"task-{secrets.token_hex(5)}"


# -- reading ---------------------------------------------------------------------------------


def read_tasks_file(path: Path) -> list[TaskRequest]:
    """The tasks of a TOML tasks file, defaults applied; raises InvalidTask on any problem."""
    try:
        data = path.read_bytes()
    except FileNotFoundError:
        raise InvalidTask(f"{path}: no such file") from None
    except OSError as e:
        raise InvalidTask(f"{path}: cannot read: {e.strerror}") from None
    try:
        text = data.decode("utf-8")
    except UnicodeDecodeError as e:
        raise InvalidTask(f"{path}: not UTF-8 text (invalid byte at offset {e.start})") from None
    try:
        raw = tomllib.loads(text)
    except tomllib.TOMLDecodeError as e:
        raise InvalidTask(f"{path}: not valid TOML: {e}") from None
    try:
        parsed = msgspec.convert(raw, TasksFile)
    except msgspec.ValidationError as e:
        raise InvalidTask(f"{path}: {e}") from None
    if not parsed.task:
        raise InvalidTask(f"{path}: no [[task]] tables")
    if parsed.defaults.name or parsed.defaults.idempotency_key:
        raise InvalidTask(f"{path}: [defaults] cannot set name or idempotency_key")
    base = path.resolve().parent
    return [_with_defaults(task, parsed.defaults, base) for task in parsed.task]


def _with_defaults(task: TaskRequest, defaults: TaskRequest, base: Path) -> TaskRequest:
    merged: dict[str, Any] = {}
    for field in TaskRequest.__struct_fields__:
        value = getattr(task, field)
        if value is None or value in ([], {}):
            value = getattr(defaults, field)
        merged[field] = value
    for field in ("repo", "cwd"):
        if merged[field] is not None:
            merged[field] = str(base / Path(merged[field]).expanduser())
    return TaskRequest(**merged)


# -- validating ------------------------------------------------------------------------------


def _utf8_size(text: str, what: str) -> int:
    try:
        return len(text.encode("utf-8"))
    except UnicodeEncodeError:
        raise InvalidTask(f"{what} is not valid UTF-8 text") from None


def _command(value: str | list[str] | None, where: str) -> list[str] | None:
    if value is None:
        return None
    if isinstance(value, str):
        _utf8_size(value, f"{where}command")
        try:
            argv = shlex.split(value)
        except ValueError as e:
            raise InvalidTask(f"{where}command {value!r}: {e}") from None
    else:
        argv = list(value)
    if not argv or not argv[0]:
        raise InvalidTask(f"{where}command is empty")
    size = sum(_utf8_size(arg, f"{where}command") for arg in argv)
    if size > MAX_PROMPT_BYTES:
        raise InvalidTask(f"{where}command is {size} bytes; the limit is 256 KiB")
    return argv


def _directory(value: str | None, what: str, where: str) -> str | None:
    if value is None:
        return None
    path = Path(value).expanduser().resolve()
    if not path.is_dir():
        raise InvalidTask(f"{where}{what} {value}: no such directory")
    return str(path)


def build_definition(request: TaskRequest, settings: Settings, where: str = "") -> TaskDefinition:
    """The validated definition of one request (`where` prefixes every message)."""
    command = _command(request.command, where)
    prompt = request.prompt
    if prompt is not None:
        size = _utf8_size(prompt, f"{where}prompt")
        if size > MAX_PROMPT_BYTES:
            raise InvalidTask(
                f"{where}prompt is {size} bytes; the limit is {MAX_PROMPT_BYTES // 1024} KiB"
            )
        if not prompt.strip():
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
    priority = 3 if request.priority is None else request.priority
    if not 1 <= priority <= 5:
        raise InvalidTask(f"{where}priority {priority} is not in 1-5 (1 is the highest)")
    attempts = settings.retry.max_attempts if request.max_attempts is None else request.max_attempts
    if not 1 <= attempts <= 100:
        raise InvalidTask(f"{where}max_attempts {attempts} is not in 1-100")
    if request.timeout is not None and request.timeout <= 0:
        raise InvalidTask(f"{where}timeout must be positive")
    if request.budget_usd is not None and request.budget_usd < 0:
        raise InvalidTask(f"{where}budget_usd must not be negative")
    if any(not tag.strip() for tag in request.tags):
        raise InvalidTask(f"{where}a tag is empty")
    repo = _directory(request.repo, "repo", where)
    if repo is not None and not is_git_repository(repo):
        raise InvalidTask(f"{where}repo {request.repo} is not a git repository")
    cwd = _directory(request.cwd, "cwd", where)
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
        tags=sorted(set(request.tags)),
        after=list(dict.fromkeys(request.after)),
        max_attempts=attempts,
        timeout=request.timeout,
        budget_usd=request.budget_usd,
        model=request.model,
        repo=repo,
        cwd=cwd,
        env=dict(request.env),
        idempotency_key=request.idempotency_key,
        name=request.name,
    )


# -- planning and appending ------------------------------------------------------------------


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
    for i, d in enumerate(definitions):
        key = d.idempotency_key
        found = _existing_for_key(store, key) if key else None
        ids[i] = found or new_task_id()
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
    order."""
    store.append_batch([p.event for p in planned if p.event is not None])
    out: dict[int, str] = {}
    for p in planned:
        key = p.event.spec.idempotency_key if p.event is not None else None
        out[p.index] = (_existing_for_key(store, key) or p.task_id) if key else p.task_id
    return [out[i] for i in sorted(out)]
