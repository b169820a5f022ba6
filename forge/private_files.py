"""Files and directories that Forge creates for itself, made private to their owner.

Everything under `$FORGE_HOME` that Forge creates — the home itself when Forge makes it, its
subdirectories (`server/`, `logs/` and each task's log directory, `worktrees/`), the config file,
pid, lock, node and log files — is mode 0700 (directories) or 0600 (files): `config.toml` may
hold `redis.password` and agent logs may hold anything an agent printed. A directory the user
made (a pre-existing FORGE_HOME) is left as it is; Forge's own subdirectories are tightened.
"""

from __future__ import annotations

import contextlib
import os
from pathlib import Path
from typing import BinaryIO

__all__ = ["open_private_append", "private_directory", "private_subdirectory", "write_private"]

DIRECTORY_MODE = 0o700
FILE_MODE = 0o600


def private_directory(path: str | Path) -> Path:
    """Create `path` and any missing parents, each 0700; directories that exist are untouched."""
    path = Path(path)
    missing: list[Path] = []
    probe = path
    while not probe.exists() and probe != probe.parent:
        missing.append(probe)
        probe = probe.parent
    for directory in reversed(missing):
        with contextlib.suppress(FileExistsError):
            directory.mkdir(mode=DIRECTORY_MODE)
    return path


def private_subdirectory(path: str | Path) -> Path:
    """A directory of Forge's own under the home: created as `private_directory` does, and made
    0700 if it already existed with wider permissions (a home made by an older Forge)."""
    path = private_directory(path)
    if os.stat(path).st_mode & 0o077:
        os.chmod(path, DIRECTORY_MODE)
    return path


def write_private(path: str | Path, data: bytes) -> None:
    """Write `data` to `path` (created or truncated) as a 0600 file."""
    fd = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, FILE_MODE)
    with os.fdopen(fd, "wb") as handle:
        os.fchmod(fd, FILE_MODE)  # an existing file keeps its mode on open: tighten it
        handle.write(data)


def open_private_append(path: str | Path) -> BinaryIO:
    """`path` opened for appending in binary mode, created as a 0600 file if missing."""
    fd = os.open(path, os.O_WRONLY | os.O_APPEND | os.O_CREAT, FILE_MODE)
    os.fchmod(fd, FILE_MODE)  # a file made by an older Forge: tighten it
    return os.fdopen(fd, "ab")
