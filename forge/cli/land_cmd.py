"""`forge task diff|merge|discard|continue|attach|cleanup`: landing an agent's work.

A task that names a repository works on its own branch (`forge/<task id>`) in its own worktree.
These commands show that work against the commit the worktree started from, merge it into a
branch (refused on conflict, the target untouched), throw it away, give the same Claude session
a follow-up, open the session interactively, and remove the worktrees of ended tasks. Merges,
discards and follow-ups are recorded in the log (`task.merged`, `task.discarded`,
`task.continued`).
"""

from __future__ import annotations

import os
import shlex
import sys
import time
from pathlib import Path

import click
import msgspec

from actors.runtime import is_transient
from events import types as t
from events.errors import TaskConflict
from events.redact import redact
from events.state import TaskState
from forge.cli.app import App, echo_data, json_option, pass_app
from forge.cli.render import all_tasks, daemon_info, fleet_state, task_or_fail
from forge.daemon import workspaces
from forge.errors import ForgeError
from forge.runtimes.landing import diff, discard, merge, numstat, worktree_of
from forge.runtimes.workspace import (
    BRANCH_PREFIX,
    Workspace,
    branch_for,
    dirty_files,
    git,
)
from forge.runtimes.worktree_sweep import sweep_worktrees
from forge.settings import environment
from forge.submit import MAX_PROMPT_BYTES

__all__ = ["LAND_COMMANDS"]


def _ended(x: TaskState) -> bool:
    """The task has ended for good (not a transient failure about to be retried)."""
    if not x.terminal:
        return False
    return x.state != "failed" or not is_transient(x.last_failure)  # type: ignore[arg-type]


def _must_have_ended(x: TaskState, doing: str) -> None:
    if not _ended(x):
        raise ForgeError(f"task {x.task_id} is {x.state}: it must have ended before you {doing}")


def _repo(x: TaskState) -> str:
    repo = x.definition.repo
    if not repo:
        raise ForgeError(f"task {x.task_id} names no repository (--repo): it has no branch")
    if not Path(repo).is_dir():
        raise ForgeError(f"task {x.task_id}: its repository {repo} is gone")
    return repo


def _workspace(app: App, x: TaskState) -> Workspace:
    """The task's branch and worktree; one clear error when there is none."""
    if x.discarded:
        raise ForgeError(f"task {x.task_id} was discarded: its branch is gone")
    found = workspaces(app.settings).find(x.task_id, _repo(x))
    if found is None:
        raise ForgeError(
            f"task {x.task_id} has no branch {branch_for(x.task_id)}: "
            + ("it made no changes" if x.attempt else "it has not run yet")
        )
    return found


def _leftovers(ws: Workspace) -> list[str]:
    return dirty_files(ws.path) if Path(ws.path).is_dir() else []


@click.command("diff")
@click.argument("task_id")
@click.option("--stat", is_flag=True, help="Only the changed files and line counts.")
@json_option
@pass_app
def diff_cmd(app: App, task_id: str, stat: bool, as_json: bool) -> None:
    """Show a task's work: its branch against the commit its worktree started from."""
    x = task_or_fail(fleet_state(app), task_id, app)
    ws = _workspace(app, x)
    left = _leftovers(ws)
    if as_json:
        files = [{"path": p, "added": a, "deleted": d} for p, a, d in numstat(ws)]
        data = {"task_id": task_id, "branch": ws.branch, "base": ws.base, "files": files}
        data["uncommitted"] = left
        if not stat:
            data["patch"] = diff(ws)
        echo_data(data, True, str)
        return
    text = diff(ws, stat=stat, color=sys.stdout.isatty())
    if text:
        click.echo(redact(text))
    else:
        click.echo(f"no changes on {ws.branch} since {ws.base[:12]}")
    if left:
        click.echo(
            f"note: {len(left)} uncommitted file(s) in {ws.path} are not shown "
            f"({', '.join(left[:5])}); an attempt's leftovers are committed when it succeeds",
            err=True,
        )


@click.command("merge")
@click.argument("task_id")
@click.option("--into", help="The branch to merge into (default: the one the task started from).")
@click.option("--squash", is_flag=True, help="Land the work as one commit on the target.")
@json_option
@pass_app
def merge_cmd(app: App, task_id: str, into: str | None, squash: bool, as_json: bool) -> None:
    """Merge a task's branch; refused on conflict (the files are named, the target untouched)."""
    x = task_or_fail(fleet_state(app), task_id, app)
    _must_have_ended(x, "merge it")
    ws = _workspace(app, x)
    left = _leftovers(ws)
    if left:
        raise ForgeError(
            f"task {task_id}'s worktree {ws.path} has uncommitted changes ({', '.join(left[:5])}):"
            " commit them there, or discard the task"
        )
    target = into or ws.onto or git(ws.repo, "branch", "--show-current")
    if not target:
        raise ForgeError("the repository's HEAD is detached: give --into BRANCH")
    what = f"task {task_id}" + (f" ({x.definition.name})" if x.definition.name else "")
    message = f"{'Squash' if squash else 'Merge'} {ws.branch} ({what})"
    done = merge(ws, target, squash=squash, message=message)
    if done is None:
        echo_data(
            {"task_id": task_id, "into": target, "merged": False},
            as_json,
            lambda _: f"nothing to merge: {ws.branch} is already in {target}",
        )
        return
    app.store.append(
        t.TaskMerged(
            at=time.time(),
            task_id=task_id,
            branch=ws.branch,
            into=target,
            commit=done.commit,
            base=ws.base,
            head=done.head,
            squash=squash,
        )
    )
    echo_data(
        {
            "task_id": task_id,
            "into": target,
            "merged": True,
            "commit": done.commit,
            "how": done.how,
        },
        as_json,
        lambda _: f"merged {ws.branch} into {target}: {done.commit[:12]} ({done.how})",
    )


@click.command("discard")
@click.argument("task_id")
@json_option
@pass_app
def discard_cmd(app: App, task_id: str, as_json: bool) -> None:
    """Throw a task's work away: remove its worktree (uncommitted changes too) and branch."""
    x = task_or_fail(fleet_state(app), task_id, app)
    _must_have_ended(x, "discard it")
    repo = _repo(x)
    if x.discarded:
        raise ForgeError(f"task {task_id} was discarded already")
    ws = workspaces(app.settings).find(task_id, repo)
    branch = branch_for(task_id)
    checkout = worktree_of(git(repo, "rev-parse", "--show-toplevel"), branch)
    if ws is None and checkout is None:
        raise ForgeError(f"task {task_id} has no worktree or branch {branch} to discard")
    target = ws or Workspace(repo=repo, path=checkout or "", branch=branch, base="")
    head = discard(target)
    app.store.append(
        t.TaskDiscarded(
            at=time.time(), task_id=task_id, branch=branch, head=head, worktree=checkout
        )
    )
    human = f"discarded {branch}" + (f" (it pointed to {head[:12]})" if head else "")
    echo_data({"task_id": task_id, "branch": branch, "head": head}, as_json, lambda _: human)


def _follow_up(prompt: str) -> str:
    if prompt == "-":
        try:
            prompt = sys.stdin.buffer.read().decode("utf-8")
        except UnicodeDecodeError as e:
            raise ForgeError(f"the prompt on stdin is not UTF-8 (byte {e.start})") from None
    if not prompt.strip():
        raise ForgeError("the follow-up prompt is empty")
    if "\0" in prompt:
        raise ForgeError("the follow-up prompt contains a NUL byte")
    if len(prompt.encode("utf-8", "surrogatepass")) > MAX_PROMPT_BYTES:
        raise ForgeError(f"the follow-up prompt is over {MAX_PROMPT_BYTES // 1024} KiB")
    return prompt


def _session(x: TaskState, doing: str) -> str:
    if x.definition.runtime != "claude" or not x.session_id:
        raise ForgeError(f"task {x.task_id} has no Claude session to {doing}")
    return x.session_id


@click.command("continue")
@click.argument("task_id")
@click.argument("prompt")
@pass_app
def continue_cmd(app: App, task_id: str, prompt: str) -> None:
    """Give an ended claude task a follow-up PROMPT (`-`: stdin), in the same session.

    The task is queued again: its next attempt resumes the same Claude session (--resume) in
    the same worktree and branch."""
    text = _follow_up(prompt)
    state = fleet_state(app)
    x = task_or_fail(state, task_id, app)
    session = _session(x, "continue")
    _must_have_ended(x, "continue it")
    if x.discarded:
        raise ForgeError(f"task {task_id} was discarded: there is no work to continue")
    event = t.TaskContinued(
        at=time.time(),
        task_id=task_id,
        prompt=text,
        session_id=session,
        after_attempt=x.attempt,
        restore=None if task_id in state.tasks else msgspec.to_builtins(x),
    )
    try:
        app.store.append_if(task_id, {"state": x.state, "attempt": x.attempt}, event)
    except TaskConflict:
        raise ForgeError(f"task {task_id} changed meanwhile; look at it again") from None
    running = daemon_info(app).running
    click.echo(
        f"continue of {task_id} queued: attempt {x.attempt + 1} resumes session {session}"
        + ("" if running else " (no daemon is running: it starts when one does)")
    )


def _attach_place(app: App, x: TaskState) -> str:
    if x.definition.repo:
        if x.discarded:
            raise ForgeError(f"task {x.task_id} was discarded: its worktree is gone")
        path, _branch = workspaces(app.settings).prepare(x.task_id, _repo(x))
        return path
    if x.definition.cwd and Path(x.definition.cwd).is_dir():
        return x.definition.cwd
    raise ForgeError(f"task {x.task_id}: the directory its session ran in is not known")


@click.command("attach")
@click.argument("task_id")
@click.option(
    "--print-command", is_flag=True, help="Print the directory and command instead of running it."
)
@pass_app
def attach_cmd(app: App, task_id: str, print_command: bool) -> None:
    """Open the task's Claude session interactively (`claude --resume`) in its worktree."""
    from forge.runtimes.claude import ClaudeRuntime

    x = task_or_fail(fleet_state(app), task_id, app)
    session = _session(x, "attach to")
    if x.state in ("assigned", "running"):
        raise ForgeError(f"task {task_id} is {x.state}: an agent is using the session now")
    env = environment()
    binary = ClaudeRuntime.from_settings(app.settings, env).resolve_binary()
    cwd = _attach_place(app, x)
    argv = [binary, f"--resume={session}"]
    if print_command:
        click.echo(f"cd {shlex.quote(cwd)} && {shlex.join(argv)}")
        return
    env.pop("CLAUDECODE", None)
    app.close()
    os.chdir(cwd)
    os.execve(binary, argv, env)  # noqa: S606 - the argv is ours, no shell on purpose


@click.command("cleanup")
@click.option("--force", is_flag=True, help="Drop uncommitted changes instead of committing them.")
@click.option("--delete-branches", is_flag=True, help="Also delete branches that hold commits.")
@json_option
@pass_app
def cleanup_cmd(app: App, force: bool, delete_branches: bool, as_json: bool) -> None:
    """Remove the worktrees of ended tasks, and say which are kept and why.

    Uncommitted changes in them are committed on the task's branch first (--force: dropped);
    branches with commits are kept unless --delete-branches."""
    everything = all_tasks(app, fleet_state(app))
    tasks = {branch_for(x.task_id).removeprefix(BRANCH_PREFIX): x for x in everything}

    def keep(name: str) -> str | None:
        x = tasks.get(name)
        if x is None:
            return "no task of this log owns it"
        return None if _ended(x) else f"task {x.task_id} is {x.state}"

    rows: list[dict[str, object]] = []
    repos = sorted({x.definition.repo for x in everything if x.definition.repo})
    for repo in repos:
        if not Path(repo).is_dir():
            continue
        for s in sweep_worktrees(repo, keep, force=force, delete_branches=delete_branches):
            w = s.workspace
            row = {"repo": w.repo, "worktree": w.path, "branch": w.branch, "removed": s.removed}
            rows.append({**row, "note": s.note})

    def human(rows: list[dict[str, object]]) -> str:
        lines = [
            f"{'removed' if r['removed'] else 'kept'} {r['worktree']} ({r['branch']}): {r['note']}"
            for r in rows
        ]
        return "\n".join(lines) or "no worktrees to remove"

    echo_data(rows, as_json, human)


LAND_COMMANDS = (diff_cmd, merge_cmd, discard_cmd, continue_cmd, attach_cmd, cleanup_cmd)
"""The landing commands, registered on the `task` group by `forge.cli.main`."""
