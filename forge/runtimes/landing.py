"""Landing a task's work: its diff, merging its branch, discarding it.

A task's branch (`forge/<task id>`) is compared with the commit its worktree started from (see
`forge.runtimes.workspace`). A merge is computed first without touching any checkout
(`git merge-tree --write-tree`), so a conflict is refused with the conflicting files named and
the target branch left exactly as it was; only a clean result moves the target, by a
fast-forward of its checkout if it is checked out somewhere, else by a checked `update-ref`.
"""

from __future__ import annotations

from dataclasses import dataclass

from forge.runtimes.workspace import (
    Workspace,
    WorkspaceError,
    git,
    git_run,
    identity_options,
    remove_branch,
)

__all__ = ["MergeConflict", "Merged", "diff", "discard", "merge", "numstat", "worktree_of"]


class MergeConflict(WorkspaceError):
    """Raised when a task's branch cannot be merged into the target without conflicts."""

    def __init__(self, branch: str, into: str, files: list[str]) -> None:
        self.files = files
        super().__init__(
            f"cannot merge {branch} into {into}: conflicts in {', '.join(files)}; "
            f"{into} is untouched"
        )


@dataclass(frozen=True)
class Merged:
    """A merge that happened: the target's new head and how it was made."""

    into: str
    commit: str
    head: str  # the task branch's head that was merged
    how: str  # fast-forward | merge commit | squashed


def _is_ancestor(repo: str, older: str, newer: str) -> bool:
    return git_run(repo, "merge-base", "--is-ancestor", older, newer).returncode == 0


def diff(workspace: Workspace, *, stat: bool = False, color: bool = False) -> str:
    """The task branch's changes since the commit its worktree started from."""
    options = ["--stat"] if stat else []
    colour = "--color=always" if color else "--no-color"
    return git(workspace.repo, "diff", colour, *options, f"{workspace.base}..{workspace.branch}")


def numstat(workspace: Workspace) -> list[tuple[str, int | None, int | None]]:
    """(path, lines added, lines deleted) per changed file; None for a binary file."""
    out = []
    spec = f"{workspace.base}..{workspace.branch}"
    for line in git(workspace.repo, "diff", "--numstat", spec).splitlines():
        added, deleted, path = line.split("\t", 2)
        out.append(
            (path, int(added) if added != "-" else None, int(deleted) if deleted != "-" else None)
        )
    return out


def worktree_of(repo: str, branch: str) -> str | None:
    """The checkout that has `branch` checked out, if any."""
    path = None
    for line in git(repo, "worktree", "list", "--porcelain").splitlines():
        if line.startswith("worktree "):
            path = line.removeprefix("worktree ")
        elif line == f"branch refs/heads/{branch}":
            return path
    return None


def merge(workspace: Workspace, into: str, *, squash: bool, message: str) -> Merged | None:
    """Merge the task's branch into `into`; None if `into` already holds all of it.

    Raises MergeConflict (nothing changed) on a conflict, WorkspaceError if the target's
    checkout has uncommitted changes to tracked files or cannot be fast-forwarded.
    """
    repo, ref = workspace.repo, f"refs/heads/{into}"
    if git_run(repo, "rev-parse", "--verify", "--quiet", ref).returncode != 0:
        raise WorkspaceError(f"no branch {into!r} in {repo}")
    target = git(repo, "rev-parse", ref)
    head = git(repo, "rev-parse", f"refs/heads/{workspace.branch}")
    if _is_ancestor(repo, head, target):
        return None
    checkout = worktree_of(repo, into)
    if checkout is not None:
        tracked = git(checkout, "status", "--porcelain", "--untracked-files=no")
        if tracked:
            changed = ", ".join(line[3:] for line in tracked.splitlines())
            raise WorkspaceError(
                f"{into} is checked out in {checkout} with uncommitted changes ({changed}); "
                "commit or stash them first"
            )
    if not squash and _is_ancestor(repo, target, head):
        commit, how = head, "fast-forward"
    else:
        done = git_run(
            repo, "merge-tree", "--write-tree", "--name-only", "--no-messages", target, head
        )
        lines = done.stdout.splitlines()
        if done.returncode == 1:
            files = list(dict.fromkeys(line for line in lines[1:] if line))
            raise MergeConflict(workspace.branch, into, files)
        if done.returncode != 0 or not lines:
            raise WorkspaceError(f"git merge-tree failed in {repo}: {done.stderr.strip()}")
        parents = ["-p", target] + ([] if squash else ["-p", head])
        tree = lines[0]
        commit = git(repo, *identity_options(repo), "commit-tree", tree, *parents, "-m", message)
        how = "squashed" if squash else "merge commit"
    if checkout is not None:
        moved = git_run(checkout, "merge", "--ff-only", "-q", commit)
        if moved.returncode != 0:
            detail = " ".join(moved.stderr.split())
            raise WorkspaceError(f"cannot update {into} in {checkout}: {detail}")
    else:
        git(repo, "update-ref", "-m", message, ref, commit, target)
    return Merged(into=into, commit=commit, head=head, how=how)


def discard(workspace: Workspace) -> str:
    """Remove the task's worktree (uncommitted changes included) and delete its branch;
    returns the commit the branch pointed to ("" if it had none)."""
    repo = workspace.repo
    head = ""
    found = git_run(repo, "rev-parse", "--verify", "--quiet", f"refs/heads/{workspace.branch}")
    if found.returncode == 0:
        head = found.stdout.strip()
    checkout = worktree_of(repo, workspace.branch)
    if checkout is not None:
        git(repo, "worktree", "remove", "--force", checkout)
    git(repo, "worktree", "prune")
    if head:
        remove_branch(repo, workspace.branch, force=True)
    return head
