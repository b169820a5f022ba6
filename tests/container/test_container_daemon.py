"""Container tasks through the real CLI and daemon: submit, logs and exit codes recorded like any
attempt, a clear refusal when the image is missing, and a daemon killed with SIGKILL while a
container runs: the next daemon adopts the attempt, records its completion once, and no
container of the namespace is left, after the task nor after `forge daemon stop`."""

from __future__ import annotations

import collections
import signal
import subprocess
from pathlib import Path

from events import types as t
from tests.container.conftest import labelled
from tests.daemon.conftest import DaemonHarness


def git_repo(path: Path) -> Path:
    path.mkdir()
    for args in (
        ["init", "-q", "-b", "main"],
        ["-c", "user.name=t", "-c", "user.email=t@t", "commit", "-q", "--allow-empty", "-m", "0"],
    ):
        subprocess.run(["git", *args], cwd=path, check=True, capture_output=True)
    return path


def test_container_tasks_run_through_the_daemon(harness: DaemonHarness, image: str) -> None:
    h = harness
    h.env["FORGE_CONTAINER_IMAGE"] = image  # the default image of tasks that name none
    h.env["FORGE_ORCHESTRATOR_SHUTDOWN_GRACE"] = "0.5"  # running tasks are stopped after it
    repo = git_repo(h.home / "repo")
    missing = h.forge("task", "submit", "--runtime", "container", "--image", "nope:1", "-c", "true")
    assert missing.returncode != 0
    assert missing.stderr.strip().count("\n") == 0  # one line, no traceback
    assert "image 'nope:1' is not on this machine" in missing.stderr

    daemon = h.foreground()
    h.wait_for("the pid file", lambda: (r := h.files.read()) is not None and r.pid == daemon.pid)
    script = 'echo "in $(pwd)"; echo from-the-container > made.txt; echo done'
    ok = h.forge(
        "task",
        "submit",
        "--runtime",
        "container",
        "--image",
        image,
        "--repo",
        str(repo),
        "-c",
        script,
    ).stdout.strip()
    failing = h.forge("task", "submit", "--runtime", "container", "-c", "echo failing; exit 3")
    bad = failing.stdout.strip()
    assert bad, failing.stderr
    h.wait_for(
        "both tasks to end",
        lambda: all(h.state().tasks[i].state in ("completed", "failed") for i in (ok, bad)),
    )

    state = h.state()
    assert state.tasks[ok].state == "completed"
    worktree = state.tasks[ok].workspace
    assert worktree is not None
    assert h.forge("task", "logs", ok).stdout.splitlines() == [f"in {worktree}", "done"]
    # what the container wrote in the mounted worktree is committed on the task's branch
    branch = state.tasks[ok].branch
    made = subprocess.run(
        ["git", "show", f"{branch}:made.txt"], cwd=repo, capture_output=True, text=True, check=True
    )
    assert made.stdout == "from-the-container\n"

    failed = state.tasks[bad]
    assert failed.state == "failed"
    assert failed.definition.image == image  # the default, recorded at submit
    shown = h.forge("task", "show", bad).stdout
    assert "exited with code 3" in shown
    assert h.forge("task", "logs", bad).stdout == "failing\n"
    assert labelled(h.namespace) == []

    # a cancel reaches the command in its container as SIGTERM, and the container goes
    trap = 'trap "echo got TERM; exit 7" TERM; echo up; while :; do sleep 0.1; done'
    cancelled = h.forge("task", "submit", "--runtime", "container", "-c", trap).stdout.strip()
    h.wait_for("its output", lambda: h.forge("task", "logs", cancelled).stdout == "up\n")
    assert h.forge("task", "cancel", cancelled).returncode == 0
    h.wait_for("the cancel", lambda: h.state().tasks[cancelled].state == "cancelled")
    assert h.forge("task", "logs", cancelled).stdout == "up\ngot TERM\n"
    assert labelled(h.namespace) == []

    # a daemon stopped while a container runs stops it (SIGTERM through the engine) and leaves
    # no container behind
    h.forge("task", "submit", "--runtime", "container", "-c", "echo up; exec sleep 300")
    h.wait_for("a running container", lambda: labelled(h.namespace, running_only=True))
    assert h.forge("daemon", "stop").returncode == 0
    assert daemon.wait(timeout=30) == 0
    assert labelled(h.namespace) == []


def test_a_container_outlives_a_killed_daemon_and_is_adopted(
    harness: DaemonHarness, image: str
) -> None:
    h = harness
    work = h.home / "work"
    work.mkdir()
    gate = work / "go"
    tasks = h.home / "tasks.toml"
    tasks.write_text(
        f'[[task]]\nruntime = "container"\nimage = "{image}"\ncwd = "{work}"\n'
        'command = "echo started; while [ ! -e go ]; do sleep 0.05; done; echo finished"\n'
    )
    first = h.foreground()
    h.wait_for("the pid file", lambda: (r := h.files.read()) is not None and r.pid == first.pid)
    (task_id,) = h.forge("task", "submit", "-f", str(tasks)).stdout.split()
    h.wait_for("the task to run", lambda: h.state().tasks[task_id].state == "running")
    (container,) = h.wait_for("its container", lambda: labelled(h.namespace, running_only=True))

    first.send_signal(signal.SIGKILL)
    first.wait(timeout=10)
    assert labelled(h.namespace, running_only=True) == [container]  # it runs on, unwatched

    second = h.foreground()
    h.wait_for(
        "the second daemon", lambda: (r := h.files.read()) is not None and r.pid == second.pid
    )
    gate.touch()  # only now may the command end: it ends under the second daemon
    h.wait_for("the task to complete", lambda: h.state().tasks[task_id].state == "completed")
    events = [e.event for e in h.store.read_range()]
    ends = collections.Counter(
        type(e).__name__
        for e in events
        if isinstance(e, (t.TaskCompleted, t.TaskFailed)) and e.task_id == task_id
    )
    assert ends == {"TaskCompleted": 1}
    starts = [e for e in events if isinstance(e, t.TaskStarted) and e.task_id == task_id]
    assert len(starts) == 1  # adopted, not started again
    assert h.forge("task", "logs", task_id).stdout == "started\nfinished\n"
    assert labelled(h.namespace) == []

    assert h.forge("daemon", "stop").returncode == 0
    assert second.wait(timeout=30) == 0
    assert labelled(h.namespace) == []


def test_forge_run_runs_container_tasks(harness: DaemonHarness, image: str) -> None:
    h = harness
    batch = f"{h.namespace}-run"
    done = h.forge(
        "run", "--namespace", batch, "--runtime", "container", "--image", image,
        "--command", "echo from the batch", "--command", "exit 5",
    )  # fmt: skip
    assert done.returncode == 1, done.stderr  # one of the two failed
    assert "1/2 tasks completed" in done.stdout
    assert labelled(batch) == []
