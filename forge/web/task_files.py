"""What a task left outside the log: an attempt's output (a claude attempt's rendered as a
transcript, as `forge task logs` does) and its branch's diff (as `forge task diff` does).
Secrets are masked; a missing log or branch is a sentence, not an error."""

from __future__ import annotations

import os
from pathlib import Path
from typing import Any

from events.errors import ForgeError
from events.redact import redact
from events.state import TaskState
from forge.daemon import workspaces
from forge.runtimes.claude_transcript import render_transcript
from forge.runtimes.landing import diff, numstat
from forge.runtimes.logfile import iter_log_lines
from forge.settings import Settings

__all__ = ["task_diff", "task_output"]

MAX_LINES = 5000  # the last lines of an attempt's output shown; the rest is counted
MAX_PATCH = 512 * 1024  # characters of a patch shown


def _log_path(settings: Settings, task: TaskState, attempt: int) -> str:
    if attempt == task.attempt and task.log_path:
        return task.log_path
    return os.path.join(settings.home_path / "logs", task.task_id, f"attempt-{attempt}.log")


def task_output(settings: Settings, task: TaskState, attempt: int | None) -> dict[str, Any]:
    """Attempt `attempt`'s output (default: the latest): its lines, a transcript for a claude
    task, the last MAX_LINES of them."""
    n = attempt or task.attempt
    base = {"task_id": task.task_id, "attempt": n, "attempts": task.attempt, "lines": []}
    if n < 1 or n > task.attempt:
        return {**base, "note": "no attempt has run yet" if not task.attempt else "no such attempt"}
    path = _log_path(settings, task, n)
    claude = task.definition.runtime == "claude"
    try:
        lines = list(iter_log_lines(path, redacted=not claude))
    except ForgeError:
        return {**base, "note": "this attempt wrote no output"}
    if claude:
        lines = [redact(line) for line in render_transcript(lines)]
    cut = max(0, len(lines) - MAX_LINES)
    note = f"{cut} earlier lines not shown" if cut else ""
    return {**base, "lines": lines[cut:], "transcript": claude, "note": note}


def task_diff(settings: Settings, task: TaskState) -> dict[str, Any]:
    """The task branch's changes since its worktree's first commit, or why there are none."""
    base: dict[str, Any] = {"task_id": task.task_id, "files": [], "patch": ""}
    repo = task.definition.repo
    if not repo:
        return {**base, "note": "this task names no repository: it has no branch"}
    if task.discarded:
        return {**base, "note": "this task was discarded: its branch is gone"}
    if not Path(repo).is_dir():
        return {**base, "note": f"its repository {repo} is gone"}
    try:
        ws = workspaces(settings).find(task.task_id, repo)
        if ws is None:
            return {**base, "note": "no branch: it has made no changes yet"}
        files = [{"path": p, "added": a, "deleted": d} for p, a, d in numstat(ws)]
        patch = redact(diff(ws))
    except ForgeError as e:
        return {**base, "note": redact(str(e))}
    note = "" if patch else f"no changes on {ws.branch} since {ws.base[:12]}"
    if len(patch) > MAX_PATCH:
        note = f"the patch is {len(patch)} characters; the first {MAX_PATCH} are shown"
        patch = patch[:MAX_PATCH]
    return {
        **base,
        "branch": ws.branch,
        "base": ws.base,
        "files": files,
        "patch": patch,
        "note": note,
    }
