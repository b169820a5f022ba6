"""`make demo` (`python -m forge.demo`): a real multi-agent job, end to end, with no API key.

What really runs: the embedded Valkey server (in `.forge-demo/` under the repository, or a
temporary directory when that path is too long for a unix socket), an in-process fleet of up to
three shell agents, and eight tasks — real `git`, `python -m unittest`, `wc` — on a scratch git
repository made for the occasion. Parallel tasks work in their own git worktrees and commit on
their own branches; one task depends on another; one task crashes (SIGKILL) on its first attempt
and is retried; the last one merges the branches. Then the log is replayed and the replayed state
compared with the fleet's live state. The server is stopped at the end; the log and the scratch
repository stay in `.forge-demo/` for a look (`FORGE_HOME=.forge-demo forge events tail`).
"""

from __future__ import annotations

import shutil
import subprocess
import sys
import tempfile
import textwrap
import time
from pathlib import Path

import click
import msgspec

from actors.policy import RetryPolicy
from events.replay import replay
from events.store import EventStore
from forge.batch import BatchResult, run_batch
from forge.cli.progress import Progress, summary
from forge.daemon import orchestrator_config
from forge.log import configure_logging
from forge.runtimes import ShellRuntime, iter_log_lines
from forge.server import EmbeddedServer
from forge.settings import load_settings
from forge.submit import plan
from forge.task_request import TaskRequest

__all__ = ["demo_tasks", "main", "make_scratch_repo"]

_NAMESPACE = "demo"
_AGENTS = 3
_SOCKET_LIMIT = 100

_CALC = '''\
"""A tiny module for the agents to work on."""


def add(a, b):
    return a + b


def sub(a, b):
    return a - b
'''

_TESTS = """\
import unittest

import calc


class CalcTest(unittest.TestCase):
    def test_add(self):
        self.assertEqual(calc.add(2, 3), 5)

    def test_sub(self):
        self.assertEqual(calc.sub(2, 3), -1)


if __name__ == "__main__":
    unittest.main()
"""


def _git(repo: Path, *args: str) -> str:
    return subprocess.run(
        ["git", *args], cwd=repo, check=True, capture_output=True, text=True
    ).stdout


def make_scratch_repo(path: Path) -> Path:
    """A git repository with a small Python module, its tests and one commit on `main`."""
    if shutil.which("git") is None:
        raise click.ClickException("the demo needs git on PATH")
    path.mkdir(parents=True)
    _git(path, "init", "-q", "-b", "main")
    _git(path, "config", "user.name", "Forge demo agent")
    _git(path, "config", "user.email", "agent@forge-demo.invalid")
    _git(path, "config", "commit.gpgsign", "false")
    (path / "calc.py").write_text(_CALC)
    (path / "test_calc.py").write_text(_TESTS)
    (path / "README.md").write_text("# scratch\n\nA repository the Forge demo agents work on.\n")
    _git(path, "add", ".")
    _git(path, "commit", "-q", "-m", "initial commit")
    return path


def _sh(script: str) -> list[str]:
    return ["sh", "-c", textwrap.dedent(script).strip()]


def demo_tasks(repo: Path) -> list[TaskRequest]:
    """The demo batch: eight shell tasks on the scratch repository (their cwd)."""
    py = sys.executable
    pause = "sleep 0.6  # a little slower, so that the display shows agents side by side"
    tasks = [
        ("tests", 1, [], f"{pause}\n{py} -m unittest -v test_calc 2>&1"),
        (
            "feature-mul",
            2,
            [],
            f"""
            git worktree add -q -b feature/mul ../wt-mul && cd ../wt-mul
            printf '\\n\\ndef mul(a, b):\\n    return a * b\\n' >> calc.py
            printf 'class MulTest(unittest.TestCase):\\n    def test_mul(self):\\n' >> test_calc.py
            printf '        self.assertEqual(calc.mul(4, 5), 20)\\n' >> test_calc.py
            {pause}
            git commit -q -am "calc: add mul" && git log --oneline -1
            """,
        ),
        (
            "test-mul",
            2,
            ["feature-mul"],
            f"""
            git worktree add -q --detach ../wt-check feature/mul && cd ../wt-check
            {py} -m unittest -v test_calc 2>&1
            """,
        ),
        (
            "flaky-fetch",
            2,
            [],
            f"""
            if [ ! -e ../.fetch-attempted ]; then
              touch ../.fetch-attempted
              echo "first attempt: the connection drops (this process kills itself)"
              kill -9 $$
            fi
            git worktree add -q -b data/words ../wt-words && cd ../wt-words
            {py} -c "import keyword; print(chr(10).join(keyword.kwlist))" > words.txt
            git add words.txt && git commit -q -m "data: python keywords" && wc -l words.txt
            """,
        ),
        ("count-lines", 3, [], f"{pause}\nwc -l calc.py test_calc.py README.md"),
        (
            "docs",
            4,
            [],
            """
            git worktree add -q -b docs/api ../wt-docs && cd ../wt-docs
            { echo "# API"; grep -n "^def " calc.py; } > API.md
            git add API.md && git commit -q -m "docs: API listing" && cat API.md
            """,
        ),
        ("lint", 4, [], f"{py} -m py_compile calc.py test_calc.py && echo compiled"),
        (
            "merge",
            5,
            ["test-mul", "flaky-fetch", "docs", "tests", "lint"],  # lint compiles in the same tree
            f"""
            for branch in feature/mul data/words docs/api; do
              git merge -q --no-ff -m "merge $branch" "$branch" || exit 1
            done
            {py} -m unittest test_calc 2>&1 && git log --oneline --graph | head -12
            """,
        ),
    ]
    return [
        TaskRequest(
            name=name,
            command=_sh(script),
            priority=priority,
            after=after,
            cwd=str(repo),
            max_attempts=3,
            timeout=60,
        )
        for name, priority, after, script in tasks
    ]


def _home(repo_root: Path) -> Path:
    home = repo_root / ".forge-demo"
    if len(str(home / "server" / "redis.sock")) > _SOCKET_LIMIT:
        return Path(tempfile.mkdtemp(prefix="forge-demo-", dir="/tmp"))
    if home.exists():
        EmbeddedServer(home).stop()
        shutil.rmtree(home)
    home.mkdir()
    return home


def _show_log(result: BatchResult, name: str) -> None:
    task = next(x for x in result.tasks if x.definition.name == name)
    if task.log_path:
        click.echo(f"\noutput of {name} (attempt {task.attempt}, {task.log_path}):")
        for line in iter_log_lines(task.log_path):
            click.echo("  " + line)


def main() -> int:
    started = time.monotonic()
    configure_logging("warning")
    home = _home(Path(__file__).resolve().parent.parent)
    repo = make_scratch_repo(home / "repo")
    settings = load_settings(environ={"FORGE_HOME": str(home)})
    config = msgspec.structs.replace(
        orchestrator_config(settings, "demo-node", _AGENTS),
        retry=RetryPolicy(base_delay=0.3, max_delay=2.0, jitter=0.1),
        shutdown_grace=5.0,
    )
    server = EmbeddedServer(home)
    server.ensure_running()
    client = server.client()
    try:
        store = EventStore(client, _NAMESPACE)
        planned = plan(store, demo_tasks(repo), settings)
        click.echo(
            f"Forge demo: {len(planned)} shell tasks, at most {_AGENTS} agents in parallel, "
            f"on the scratch git repository {repo}\n"
            f"embedded server: {server.url}   log namespace: {_NAMESPACE}\n"
        )
        ids = [p.task_id for p in sorted(planned, key=lambda p: p.index)]
        result = run_batch(store, {"shell": ShellRuntime()}, config, planned, Progress(ids))
        click.echo("\n" + summary(result))
        _show_log(result, "test-mul")
        replayed, report = replay(store, until=result.live.position, use_snapshot=False)
        same = replayed.same_as(result.live)
        counts = ", ".join(f"{n} {s}" for s, n in sorted(replayed.counts().items()))
        click.echo(
            f"\nreplay: {report.events_applied} events folded from an empty state up to "
            f"{report.position}: {counts}"
        )
        if not same:
            click.echo("replayed state DIFFERS from the live state", err=True)
            return 1
        click.echo("replayed state matches live state")
        click.echo(
            "\nthe scratch repository after the job:\n"
            + _git(repo, "log", "--oneline", "--graph", "--all")
        )
        click.echo(
            f"done in {time.monotonic() - started:.1f}s; explore the log with "
            f"FORGE_HOME={home} FORGE_REDIS_NAMESPACE={_NAMESPACE} forge events tail"
        )
        return 0 if result.ok else 1
    finally:
        client.close()
        server.stop()


if __name__ == "__main__":
    sys.exit(main())
