"""Everything Forge creates under FORGE_HOME is private: directories 0700, files 0600.

The walk skips the content of git worktrees (a task's checkout), whose files git creates with
its own modes: the worktrees directory above them is 0700, so they are out of others' reach.
"""

from __future__ import annotations

import os
import shutil
import stat
import subprocess
import sys
from collections.abc import Iterator
from pathlib import Path

import pytest

from forge.private_files import open_private_append, private_subdirectory, write_private
from forge.server import EmbeddedServer
from tests.conftest import short_tempdir


@pytest.fixture
def base() -> Iterator[Path]:
    path = short_tempdir("fgp")
    yield path
    EmbeddedServer(path / "h").stop(force=True)
    shutil.rmtree(path, ignore_errors=True)


def forge(home: Path, *args: str, cwd: Path | None = None) -> subprocess.CompletedProcess[str]:
    env = {k: v for k, v in os.environ.items() if not k.startswith("FORGE_")}
    env["FORGE_HOME"] = str(home)
    proc = subprocess.run(
        [sys.executable, "-m", "forge", *args],
        env=env,
        cwd=cwd,
        capture_output=True,
        text=True,
        timeout=90,
        check=False,
    )
    assert proc.returncode == 0, (args, proc.stdout, proc.stderr)
    return proc


def git_repo(path: Path) -> Path:
    path.mkdir()
    for args in (
        ["init", "-q"],
        ["-c", "user.name=t", "-c", "user.email=t@t", "commit", "-q", "--allow-empty", "-m", "0"],
    ):
        subprocess.run(["git", *args], cwd=path, check=True, capture_output=True)
    return path


def too_open(home: Path) -> list[str]:
    """Every path under `home` (itself included) with a group or other permission bit."""
    found = []
    for root, dirs, files in os.walk(home):
        if Path(root).parent.parent == home / "worktrees":
            dirs[:] = []  # a task's checkout: git's own modes, behind a 0700 directory
            continue
        for path in [Path(root), *(Path(root) / name for name in files)]:
            mode = stat.S_IMODE(os.lstat(path).st_mode)
            if mode & 0o077:
                found.append(f"{oct(mode)} {path.relative_to(home.parent)}")
    return sorted(set(found))


def test_a_home_forge_creates_holds_nothing_others_can_read(base: Path) -> None:
    home = base / "h"  # Forge makes it
    repo = git_repo(base / "repo")
    tasks = base / "tasks.toml"
    tasks.write_text(
        f'[[task]]\nname = "hello"\ncommand = ["sh", "-c", "echo hello"]\nrepo = "{repo}"\n'
    )
    forge(home, "config", "init")
    forge(home, "run", str(tasks))
    forge(home, "daemon", "start")
    forge(home, "daemon", "stop")
    forge(home, "server", "stop")

    made = {path.name for path in home.iterdir()}
    assert {"config.toml", "server", "logs", "worktrees", "daemon.log", "node-id"} <= made
    assert any((home / "logs").rglob("attempt-1.log"))
    assert any((home / "server" / "appendonlydir").iterdir())
    assert too_open(home) == []


def test_a_users_own_home_is_left_alone_but_forges_directories_are_private(base: Path) -> None:
    home = base / "h"
    home.mkdir(mode=0o755)
    os.chmod(home, 0o755)
    (home / "server").mkdir(mode=0o755)  # made by an older Forge
    os.chmod(home / "server", 0o755)
    server = EmbeddedServer(home)
    server.ensure_running()
    assert stat.S_IMODE(os.stat(home).st_mode) == 0o755
    assert too_open(home) == [f"{oct(0o755)} h"]


def test_private_files_are_tightened_when_they_exist(base: Path) -> None:
    loose = base / "loose"
    loose.write_bytes(b"old")
    os.chmod(loose, 0o644)
    write_private(loose, b"new")
    assert (stat.S_IMODE(os.stat(loose).st_mode), loose.read_bytes()) == (0o600, b"new")
    os.chmod(loose, 0o644)
    with open_private_append(loose) as handle:
        handle.write(b"+")
    assert (stat.S_IMODE(os.stat(loose).st_mode), loose.read_bytes()) == (0o600, b"new+")
    folder = base / "folder"
    folder.mkdir(mode=0o755)
    os.chmod(folder, 0o755)
    assert private_subdirectory(folder / "a" / "b") == folder / "a" / "b"
    assert stat.S_IMODE(os.stat(folder).st_mode) == 0o755  # existed: not ours to change
    assert stat.S_IMODE(os.stat(folder / "a").st_mode) == 0o700
    private_subdirectory(folder)
    assert stat.S_IMODE(os.stat(folder).st_mode) == 0o700
