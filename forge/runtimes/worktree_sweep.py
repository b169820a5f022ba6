"""Sweeping a repository's `forge/` worktrees: removing those whose task no longer needs them.

The work of the `cleanup` command (and of `cleanup_worktrees`), apart from
`forge.runtimes.workspace`, which makes and releases one task's worktree: a sweep walks every
worktree of a repository, decides with its caller which to keep, commits or drops leftovers and
says what it did with each.
"""

from __future__ import annotations

from collections.abc import Callable, Iterable
from dataclasses import dataclass
from pathlib import Path

from forge.runtimes.workspace import (
    BRANCH_PREFIX,
    Workspace,
    WorkspaceError,
    _branch_exists,
    _git,
    _workspace,
    _worktrees,
    commit_leftovers,
    dirty_files,
    is_dirty,
    release_worktree,
)

__all__ = ["Swept", "cleanup_worktrees", "sweep_worktrees"]


def cleanup_worktrees(
    repo: str | Path,
    still_needed: Callable[[str], bool] | Iterable[str],
    *,
    force: bool = False,
    delete_branches: bool = False,
) -> list[Workspace]:
    """Remove the `forge/` worktrees of tasks that no longer need them; returns those removed.

    `still_needed` holds the task ids (as in their branch names, after `forge/`) whose
    worktrees must stay, or is a predicate on them. Branches with commits are kept unless
    `delete_branches`; dirty worktrees are kept unless `force`.
    """
    needed = still_needed if callable(still_needed) else set(still_needed).__contains__
    repo_top = _git(repo, "rev-parse", "--show-toplevel")
    _git(repo_top, "worktree", "prune")
    removed: list[Workspace] = []
    for path, branch in _worktrees(repo_top).items():
        if not branch.startswith(BRANCH_PREFIX) or needed(branch.removeprefix(BRANCH_PREFIX)):
            continue
        base = _git(repo_top, "merge-base", "HEAD", branch)
        workspace = Workspace(repo=repo_top, path=path, branch=branch, base=base)
        if release_worktree(
            workspace, succeeded=True, retention="never", force=force, delete_branch=delete_branches
        ):
            removed.append(workspace)
    return removed


@dataclass(frozen=True)
class Swept:
    """What `sweep_worktrees` did with one `forge/` worktree: removed or kept, and why."""

    workspace: Workspace
    removed: bool
    note: str


def sweep_worktrees(
    repo: str | Path,
    keep_reason: Callable[[str], str | None],
    *,
    force: bool = False,
    delete_branches: bool = False,
) -> list[Swept]:
    """Remove every `forge/` worktree whose task no longer needs it, and say what was done.

    `keep_reason(name)` (name: the branch after `forge/`) says why a worktree must stay, or
    None. Uncommitted changes of a removed worktree are committed on its branch first (with
    `force`: dropped). A branch with commits stays unless `delete_branches`. A worktree that
    cannot be removed is reported as kept, with git's reason.
    """
    repo_top = _git(repo, "rev-parse", "--show-toplevel")
    _git(repo_top, "worktree", "prune")
    swept: list[Swept] = []
    for path, branch in _worktrees(repo_top).items():
        if not branch.startswith(BRANCH_PREFIX):
            continue
        name = branch.removeprefix(BRANCH_PREFIX)
        try:
            workspace = _workspace(repo_top, Path(path), branch)
        except WorkspaceError as e:
            swept.append(Swept(Workspace(repo_top, path, branch, ""), False, str(e)))
            continue
        reason = keep_reason(name)
        if reason is not None:
            swept.append(Swept(workspace, False, reason))
            continue
        try:
            swept.append(_sweep_one(workspace, name, force, delete_branches))
        except WorkspaceError as e:
            swept.append(Swept(workspace, False, str(e)))
    return swept


def _sweep_one(workspace: Workspace, name: str, force: bool, delete_branches: bool) -> Swept:
    notes = []
    if Path(workspace.path).is_dir() and is_dirty(workspace):
        if force:
            notes.append(f"uncommitted changes dropped ({len(dirty_files(workspace.path))} files)")
        else:
            message = f"forge: uncommitted changes of task {name}, kept by cleanup"
            commit = commit_leftovers(workspace, message) or ""
            notes.append(f"uncommitted changes committed as {commit[:12]}")
    release_worktree(
        workspace, succeeded=True, retention="never", force=True, delete_branch=delete_branches
    )
    if _branch_exists(workspace.repo, workspace.branch):
        count = _git(workspace.repo, "rev-list", "--count", f"{workspace.base}..{workspace.branch}")
        notes.append(f"branch kept ({count} commits; merge or discard the task)")
    else:
        notes.append("branch deleted")
    return Swept(workspace, True, "; ".join(notes))
