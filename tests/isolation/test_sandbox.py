"""The sandbox, proven with the real bubblewrap: each escape attempt (a write outside the
working directory, a read of a sibling task's worktree, a read of the daemon's files, a socket
opened with the network off) succeeds without the sandbox and fails under it, and the attempt
is recorded failed with the kernel's own words in its log."""

from __future__ import annotations

import shutil
import socket
import subprocess
import sys
import tempfile
from collections.abc import Iterator
from pathlib import Path

import msgspec
import psutil
import pytest

from forge.runtimes.isolation import daemon_paths
from forge.runtimes.shell import ShellRuntime
from forge.runtimes.workspace import GitWorkspaces
from tests.isolation.conftest import Home, needs_bwrap, wait_until_gone
from tests.runtimes.conftest import Collector

pytestmark = needs_bwrap

PY = sys.executable


def _git(repo: Path, *args: str) -> str:
    done = subprocess.run(
        ["git", *args], cwd=repo, capture_output=True, text=True, check=True, timeout=30
    )
    return done.stdout


@pytest.fixture
def outside() -> Iterator[Path]:
    """A directory outside /tmp (the sandbox's /tmp is private: this one is merely read-only)."""
    path = Path(tempfile.mkdtemp(prefix="forge-iso-", dir="/var/tmp"))
    yield path
    shutil.rmtree(path, ignore_errors=True)


@pytest.fixture
def listener() -> Iterator[int]:
    """A TCP port on the host's loopback that accepts connections."""
    with socket.socket() as server:
        server.bind(("127.0.0.1", 0))
        server.listen(8)
        yield server.getsockname()[1]


def _program(code: str) -> list[str]:
    return [PY, "-I", "-c", code]


@pytest.mark.parametrize("sandbox", [False, True])
def test_a_write_outside_the_working_directory(
    home: Home, tmp_path: Path, outside: Path, sandbox: bool
) -> None:
    work = tmp_path / "work"
    work.mkdir()
    code = (
        "open('inside.txt', 'w').write('in')\n"
        f"open({str(outside / 'escaped.txt')!r}, 'w').write('out')\n"
        "print('ESCAPED')"
    )
    outcome, lines = home.run(home.spec(_program(code), work, sandbox=sandbox))
    assert (work / "inside.txt").read_text() == "in"  # the working directory stays writable
    if sandbox:
        assert outcome.failure == "exit", outcome
        assert not (outside / "escaped.txt").exists()
        assert any("Read-only file system" in line for line in lines), lines
    else:
        assert outcome.ok, (outcome, lines)
        assert (outside / "escaped.txt").read_text() == "out"


@pytest.mark.parametrize("sandbox", [False, True])
def test_a_read_of_a_sibling_worktree_and_of_the_daemons_files(
    home: Home, tmp_path: Path, sandbox: bool
) -> None:
    repo = tmp_path / "repo"
    repo.mkdir()
    _git(repo, "init", "-q", "-b", "main")
    _git(repo, "config", "user.email", "dev@example.invalid")
    _git(repo, "config", "user.name", "Dev")
    (repo / "README").write_text("app\n")
    _git(repo, "add", "README")
    _git(repo, "commit", "-qm", "init")
    worktrees = GitWorkspaces(home.home / "worktrees")
    mine, _ = worktrees.prepare("mine", str(repo))
    sibling, _ = worktrees.prepare("sibling", str(repo))
    (Path(sibling) / "secret.txt").write_text("the sibling's work\n")
    daemon_file = home.home / "config.toml"
    daemon_file.write_text("[redis]\npassword = 'hunter2'\n")
    code = (
        "import subprocess\n"
        "open('notes.txt', 'w').write('mine')\n"  # a commit in its own worktree works
        "subprocess.run(['git', 'add', 'notes.txt'], check=True)\n"
        "subprocess.run(['git', '-c', 'user.name=A', '-c', 'user.email=a@b.invalid', 'commit',"
        " '-qm', 'notes'], check=True)\n"
        f"print('daemon:', open({str(daemon_file)!r}).read().strip() or 'EMPTY')\n"
        f"print('sibling:', open({str(Path(sibling) / 'secret.txt')!r}).read().strip())\n"
    )
    outcome, lines = home.run(home.spec(_program(code), Path(mine), sandbox=sandbox))
    assert _git(repo, "log", "--format=%s", "forge/mine").splitlines()[0] == "notes"
    if sandbox:
        assert outcome.failure == "exit", outcome
        assert not any("hunter2" in line or "sibling's work" in line for line in lines), lines
        assert any("No such file or directory" in line for line in lines), lines
    else:
        assert outcome.ok, (outcome, lines)
        assert "sibling: the sibling's work" in lines


@pytest.mark.parametrize(("sandbox", "network"), [(False, None), (True, "off"), (True, "on")])
def test_a_socket_with_the_network_off(
    home: Home, tmp_path: Path, listener: int, sandbox: bool, network: str | None
) -> None:
    code = (
        "import socket\n"
        f"socket.create_connection(('127.0.0.1', {listener}), timeout=10).close()\n"
        "print('CONNECTED')"
    )
    spec = home.spec(_program(code), tmp_path, sandbox=sandbox, network=network)
    outcome, lines = home.run(spec)
    if network == "off":
        assert outcome.failure == "exit", outcome
        assert "CONNECTED" not in lines
        assert any("ConnectionRefusedError" in line for line in lines), lines
    else:
        assert outcome.ok, (outcome, lines)
        assert "CONNECTED" in lines


@pytest.mark.parametrize("base", ["http://127.0.0.1:{port}", "http://localhost:{port}"])
def test_network_api_reaches_the_api_and_nothing_else(
    home: Home, tmp_path: Path, listener: int, base: str
) -> None:
    """The API's port (by address or by name) is relayed; another port of the host is refused,
    and no other address has a route. The relay does not outlive the attempt."""
    with socket.socket() as other:
        other.bind(("127.0.0.1", 0))
        other.listen(8)
        targets = [("127.0.0.1", listener), ("localhost", listener)]
        targets += [("127.0.0.1", other.getsockname()[1]), ("192.0.2.1", 443)]
        code = (
            "import socket\n"
            f"for host, port in {targets!r}:\n"
            "    try:\n"
            "        socket.create_connection((host, port), timeout=10).close()\n"
            "        print(host, port, 'OPEN')\n"
            "    except OSError as e:\n"
            "        print(host, port, type(e).__name__)\n"
        )
        spec = home.spec(_program(code), tmp_path, sandbox=True, network="api")
        env = {**spec.env, "ANTHROPIC_BASE_URL": base.format(port=listener)}
        outcome, lines = home.run(msgspec.structs.replace(spec, env=env))
        assert outcome.ok, (outcome, lines)
        assert lines == [
            f"127.0.0.1 {listener} OPEN",
            f"localhost {listener} OPEN",
            f"127.0.0.1 {other.getsockname()[1]} ConnectionRefusedError",
            "192.0.2.1 443 OSError",  # Network is unreachable
        ]
    relays = [
        p.pid
        for p in psutil.process_iter(["cmdline"])
        if "netrelay.py" in (cmdline := " ".join(p.info["cmdline"] or []))
        and f":{listener} " in cmdline
    ]
    assert wait_until_gone(relays) == []


def test_tmp_and_home_are_private_and_the_home_is_kept(home: Home, tmp_path: Path) -> None:
    marker = f"/tmp/forge-iso-{tmp_path.name}"
    code = (
        "import os, pathlib\n"
        f"pathlib.Path({marker!r}).write_text('x')\n"
        "pathlib.Path(os.environ['HOME'], 'dotfile').write_text('kept')\n"
        "print('home:', sorted(os.listdir(os.environ['HOME'])))"
    )
    work = tmp_path / "work"
    work.mkdir()
    spec = home.spec(_program(code), work, sandbox=True)
    outcome, lines = home.run(spec)
    assert outcome.ok, (outcome, lines)
    assert not Path(marker).exists()  # /tmp was the sandbox's own
    assert not (Path(home.env["HOME"]) / "dotfile").exists()  # so was the home
    kept = Path(spec.log_path).parent / "home" / "dotfile"
    assert kept.read_text() == "kept"  # the task's home, there for its next attempt
    assert "home: ['dotfile']" in lines


def test_an_unknown_program_fails_the_attempt_visibly(home: Home, tmp_path: Path) -> None:
    spec = home.spec(["no-such-program-forge"], tmp_path, sandbox=True)
    outcome, lines = home.run(spec)
    assert not outcome.ok
    assert any("no-such-program-forge" in line for line in lines), lines


def test_declared_extra_directories_are_writable(home: Home, tmp_path: Path) -> None:
    work, extra = tmp_path / "work", tmp_path / "extra"
    work.mkdir()
    extra.mkdir()
    code = f"open({str(extra / 'shared.txt')!r}, 'w').write('extra')"
    spec = home.spec(_program(code), work, sandbox=True, add_dirs=[str(extra)])
    outcome, lines = home.run(spec)
    assert outcome.ok, (outcome, lines)
    assert (extra / "shared.txt").read_text() == "extra"


def test_a_cancel_reaches_the_sandboxed_command(home: Home, tmp_path: Path) -> None:
    script = "trap 'echo got TERM; exit 3' TERM; echo up; sleep 60 & wait"
    spec = home.spec(["/bin/sh", "-c", script], tmp_path, sandbox=True)
    sink = Collector()
    handle = home.runtime.execute(spec, sink)
    sink.wait_for_line(lambda line: line == "up")
    handle.terminate(grace=30.0)  # no SIGKILL within the test: the SIGTERM must do it
    outcome = handle.wait(20.0)
    assert outcome is not None
    assert outcome.failure == "cancelled", outcome
    assert "got TERM" in sink.lines()


@pytest.mark.parametrize("sandbox", [False, True])
def test_the_daemons_redis_socket_is_out_of_reach(
    home: Home, tmp_path: Path, outside: Path, sandbox: bool
) -> None:
    """A unix socket is reachable whatever the network: the daemon's, when redis.url names one
    outside FORGE_HOME, is hidden like FORGE_HOME itself."""
    path = outside / "redis.sock"
    with socket.socket(socket.AF_UNIX) as server:
        server.bind(str(path))
        server.listen(8)
        runtime = ShellRuntime(hidden=daemon_paths(str(home.home), f"unix://{path}"))
        code = (
            "import socket\n"
            f"socket.socket(socket.AF_UNIX).connect({str(path)!r})\n"
            "print('CONNECTED')"
        )
        spec = home.spec(
            _program(code), tmp_path, sandbox=sandbox, network="off" if sandbox else None
        )
        sink = Collector()
        outcome = runtime.execute(spec, sink).wait(60)
        runtime.cleanup()
    assert outcome is not None
    if sandbox:
        assert outcome.failure == "exit", outcome
        assert "CONNECTED" not in sink.lines()
    else:
        assert outcome.ok, (outcome, sink.lines())
        assert "CONNECTED" in sink.lines()
