"""A runtime from another distribution, found through the `forge.runtimes` entry points by the
stock CLI and daemon code: a real distribution (package + dist-info) on PYTHONPATH, no
registration by hand."""

from __future__ import annotations

import json
import os
import subprocess
import sys
import textwrap
from pathlib import Path

import pytest

from tests.conftest import short_tempdir

_PLUGIN = '''
"""A runtime that says the task's prompt (a shell runtime running `echo`)."""

from msgspec.structs import replace

from forge.runtimes import ShellRuntime


class EchoRuntime(ShellRuntime):
    name = "echo"

    def execute(self, spec, sink):
        words = spec.prompt or "nothing to say"
        return super().execute(replace(spec, command=["echo", "echo says:", words]), sink)


class Broken:
    def __init__(self):
        raise RuntimeError("this runtime cannot be built")
'''


def _distribution(root: Path, entry_points: str) -> Path:
    """Install a distribution the way pip lays one out: its package and its dist-info."""
    (root / "forge_echo").mkdir(parents=True)
    (root / "forge_echo" / "__init__.py").write_text(_PLUGIN)
    info = root / "forge_echo-0.1.dist-info"
    info.mkdir()
    (info / "METADATA").write_text("Metadata-Version: 2.1\nName: forge-echo\nVersion: 0.1\n")
    (info / "entry_points.txt").write_text(textwrap.dedent(entry_points))
    return root


@pytest.fixture
def plugin_env(forge_env: dict[str, str], tmp_path: Path) -> dict[str, str]:
    root = _distribution(
        tmp_path / "site",
        """\
        [forge.runtimes]
        echo = forge_echo:EchoRuntime
        broken = forge_echo:Broken
        missing = forge_echo_gone:Nothing
        shell = forge_echo:EchoRuntime
        """,
    )
    env = {k: v for k, v in os.environ.items() if not k.startswith("FORGE_")}
    return env | forge_env | {"PYTHONPATH": str(root)}


def forge(env: dict[str, str], *args: str) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [sys.executable, "-m", "forge", *args],
        env=env,
        capture_output=True,
        text=True,
        timeout=120,
        check=False,
    )


def test_the_cli_lists_a_plugin_runtime(plugin_env: dict[str, str]) -> None:
    listed = forge(plugin_env, "agent", "list")
    assert listed.returncode == 0, listed.stderr
    runtimes = listed.stdout.splitlines()[-1]
    # not the missing module
    assert runtimes == "runtimes: broken, claude, container, echo, noop, shell"
    without = {k: v for k, v in plugin_env.items() if k != "PYTHONPATH"}
    assert forge(without, "agent", "list").stdout.splitlines()[-1] == (
        "runtimes: claude, container, noop, shell"
    )


def test_a_batch_runs_on_a_plugin_runtime(plugin_env: dict[str, str]) -> None:
    work = short_tempdir("fgpl")
    tasks = work / "tasks.toml"
    tasks.write_text(
        textwrap.dedent(
            """\
            [[task]]
            name = "hello"
            runtime = "echo"
            prompt = "hello from a plugin"

            [[task]]
            name = "plain"
            command = ["echo", "shell is still the built-in one"]
            """
        )
    )
    plugin_env = plugin_env | {"FORGE_REDIS_NAMESPACE": "plugins"}
    ran = forge(plugin_env, "run", str(tasks), "--namespace", "plugins", "--json")
    assert ran.returncode == 0, ran.stderr
    assert "runtime unavailable" in ran.stderr  # the broken one
    assert "plugin runtime ignored: the name is built in" in ran.stderr  # its `shell`
    listed = forge(plugin_env, "task", "list", "--json")
    tasks_by_runtime = {
        task["definition"].get("runtime", "shell"): task["task_id"]
        for task in json.loads(listed.stdout)
    }
    logs = forge(plugin_env, "task", "logs", tasks_by_runtime["echo"])
    assert logs.stdout.strip() == "echo says: hello from a plugin"
    plain = forge(plugin_env, "task", "logs", tasks_by_runtime["shell"])
    assert plain.stdout.strip() == "shell is still the built-in one"


def test_an_unknown_runtime_is_refused_in_one_line(plugin_env: dict[str, str]) -> None:
    done = forge(plugin_env, "task", "submit", "--runtime", "missing", "say hi")
    assert done.returncode == 1
    assert done.stderr.count("\n") == 1
    assert "unknown runtime 'missing'" in done.stderr
