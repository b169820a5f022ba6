"""What a person asks for: the `TaskRequest` model (the flags of `forge task submit`, or one
`[[task]]` table) and the reading of a tasks file into requests, `[defaults]` applied.

The tasks file is TOML: an optional `[defaults]` table and one `[[task]]` table per task, with
the fields of `TaskRequest`. `name` identifies a task within the file, so that `after` may name
other tasks of the same file (in any order; a cycle is refused) as well as ids of tasks already
in the log. `command` follows Docker's convention: a string is run by `/bin/sh -c STRING` (the
shell form, stored as that argv), an array is exec'd as given (the exec form). Relative `repo`
and `cwd` paths are relative to the file's directory.

It is apart from `forge.submit`, which validates each request (`build_definition`) and appends
them: reading and merging a file is a concern of its own, and this module checks no more than
the file's size, encoding and shape.
"""

from __future__ import annotations

import tomllib
from pathlib import Path
from typing import Any

import msgspec

from forge.errors import InvalidTask

__all__ = ["MAX_TASKS_FILE_BYTES", "TaskRequest", "TasksFile", "read_tasks_file"]

MAX_TASKS_FILE_BYTES = 16 * 1024 * 1024
"""The largest tasks file read; a longer one (or `/dev/zero`) is refused before parsing."""


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
    retry_on_exit: bool | None = None  # None: not set (a [defaults] value applies)
    # isolation (forge.isolation); None: not set (a [defaults] value, then [isolation] applies)
    sandbox: bool | None = None
    network: str | None = None
    memory: str | int | None = None  # "512M", "2G"; a bare number is MiB
    cpus: float | None = None
    pids: int | None = None
    # claude permissions (forge.permissions); None: not set (a [defaults] value, then the
    # settings' [claude] default applies)
    permission_mode: str | None = None
    allowed_tools: list[str] | None = None
    disallowed_tools: list[str] | None = None
    add_dirs: list[str] | None = None
    locked: bool | None = None
    image: str | None = None  # container runtime: None, the settings' [container] image


class TasksFile(msgspec.Struct, kw_only=True, forbid_unknown_fields=True):
    """A tasks file: defaults for every task, and the tasks."""

    defaults: TaskRequest = msgspec.field(default_factory=TaskRequest)
    task: list[TaskRequest] = []


def read_tasks_file(path: Path) -> list[TaskRequest]:
    """The tasks of a TOML tasks file, defaults applied; raises InvalidTask on any problem."""
    try:
        with path.open("rb") as f:
            data = f.read(MAX_TASKS_FILE_BYTES + 1)
    except FileNotFoundError:
        raise InvalidTask(f"{path}: no such file") from None
    except OSError as e:
        raise InvalidTask(f"{path}: cannot read: {e.strerror}") from None
    if len(data) > MAX_TASKS_FILE_BYTES:
        raise InvalidTask(f"{path}: over the limit of {MAX_TASKS_FILE_BYTES // 2**20} MiB")
    try:
        text = data.decode("utf-8")
    except UnicodeDecodeError as e:
        raise InvalidTask(f"{path}: not UTF-8 text (invalid byte at offset {e.start})") from None
    try:
        raw = tomllib.loads(text)
        parsed = msgspec.convert(raw, TasksFile)
    except tomllib.TOMLDecodeError as e:
        raise InvalidTask(f"{path}: not valid TOML: {e}") from None
    except msgspec.ValidationError as e:
        raise InvalidTask(f"{path}: {e}") from None
    except RecursionError:
        raise InvalidTask(f"{path}: nested too deeply") from None
    if not parsed.task:
        raise InvalidTask(f"{path}: no [[task]] tables")
    if parsed.defaults.name or parsed.defaults.idempotency_key:
        raise InvalidTask(f"{path}: [defaults] cannot set name or idempotency_key")
    base = path.resolve().parent
    return [_with_defaults(task, parsed.defaults, base) for task in parsed.task]


_EXPLICIT_EMPTY = ("allowed_tools", "disallowed_tools", "add_dirs")


def _with_defaults(task: TaskRequest, defaults: TaskRequest, base: Path) -> TaskRequest:
    merged: dict[str, Any] = {}
    for field in TaskRequest.__struct_fields__:
        value = getattr(task, field)
        if value is None or value in ([], {}):
            value = getattr(defaults, field)
        merged[field] = value
    for field in ("repo", "cwd"):
        if merged[field] is not None and "\0" not in merged[field]:  # refused later, one line
            merged[field] = str(base / Path(merged[field]).expanduser())
    for field in _EXPLICIT_EMPTY:  # `allowed_tools = []` in a task means none, not the default
        if getattr(task, field) is not None:
            merged[field] = getattr(task, field)
    if task.locked:  # a locked task inherits no loosening from [defaults]
        for field in ("permission_mode", "allowed_tools", "add_dirs"):
            merged[field] = getattr(task, field)
    if merged["add_dirs"] is not None:
        merged["add_dirs"] = [
            d if "\0" in d else str(base / Path(d).expanduser()) for d in merged["add_dirs"]
        ]
    return TaskRequest(**merged)
