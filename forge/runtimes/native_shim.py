"""Which shim an attempt runs under: the C shim when it builds, else the Python one.

The C shim (`shim.c`) keeps the contract of `shim.py` but starts in about a millisecond instead
of ~30 ms and holds a few hundred kB of its own memory instead of ~6 MB. It is compiled with
the system C compiler (`cc`, libc only) on first use, into `$FORGE_HOME/bin/forge-shim-<key>`,
where the key is a hash of the source, the compiler flags and the machine: an upgrade builds a
new binary, and concurrent builds never see each other's half-written file (each compiles to
a temporary name, then renames). Without a compiler, or when the build or its one trial run
fails, every attempt runs under the Python shim and one warning says why; a task never fails
for it.
"""

from __future__ import annotations

import contextlib
import hashlib
import os
import platform
import shutil
import stat
import subprocess
import sys
import threading
from collections.abc import Callable
from pathlib import Path

from forge.errors import ForgeError
from forge.log import get_logger
from forge.private_files import private_directory
from forge.settings import forge_home

__all__ = [
    "NATIVE_PREFIX",
    "PYTHON_SHIM",
    "SOURCE",
    "NativeShimUnavailable",
    "ShimChoice",
    "build",
    "python_command",
    "shim_command",
    "shim_fallback",
]

SOURCE = Path(__file__).with_name("shim.c")
PYTHON_SHIM = Path(__file__).with_name("shim.py")
NATIVE_PREFIX = "forge-shim-"  # the C shim's file name starts with this (find_shim looks for it)
CFLAGS = ("-O2", "-std=c11", "-s")
_BUILD_TIMEOUT = 120.0  # seconds
_TRIAL_TIMEOUT = 10.0


class NativeShimUnavailable(ForgeError):
    """Raised when the C shim cannot be built or run here (the Python shim is used instead)."""


def python_command() -> list[str]:
    """The argv prefix that runs the Python shim (`-I -S`: no site-packages, no PYTHON*)."""
    return [sys.executable, "-I", "-S", str(PYTHON_SHIM)]


def build(directory: Path, *, source: Path = SOURCE, compiler: str = "cc") -> Path:
    """The C shim built from `source` in `directory`, compiled there unless already present.

    Raises NativeShimUnavailable without a compiler, when the build fails, or when the binary
    does not run (a `noexec` mount, say)."""
    code = source.read_bytes()
    key = hashlib.sha256(b"\0".join([code, *(f.encode() for f in CFLAGS), _machine()]))
    target = directory / f"{NATIVE_PREFIX}{key.hexdigest()[:16]}"
    if not _trusted(target):
        _compile(code, target, compiler)
    _trial(target)
    return target


class ShimChoice:
    """The shim command, settled once per process: the C shim if it builds, else Python's."""

    def __init__(self, directory: Callable[[], Path], compiler: str = "cc") -> None:
        """`directory`: where to build (called on first use: the home may change until then)."""
        self._directory = directory
        self._compiler = compiler
        self._lock = threading.Lock()
        self._command: list[str] | None = None

    def command(self) -> list[str]:
        """The argv prefix to run a shim with; builds the C shim on the first call."""
        with self._lock:
            if self._command is None:
                try:
                    binary = build(self._directory(), compiler=self._compiler)
                    self._command = [str(binary)]
                except (NativeShimUnavailable, OSError) as e:
                    self._use_python(str(e))
            return list(self._command or python_command())

    def fallback(self, reason: str) -> list[str]:
        """Give up on the C shim (it failed to start: `reason`) and use the Python shim."""
        with self._lock:
            if self._command != python_command():
                self._use_python(reason)
            return python_command()

    def _use_python(self, reason: str) -> None:
        # a logger of the moment (once per process): one bound at import would miss a later
        # configuration of the logging
        log = get_logger(__name__)
        log.warning("runtime.native_shim_unavailable", reason=reason, using=str(PYTHON_SHIM))
        self._command = python_command()


_choice = ShimChoice(lambda: forge_home() / "bin")
shim_command = _choice.command
shim_fallback = _choice.fallback


def _machine() -> bytes:
    return f"{sys.platform}-{platform.machine()}".encode()


def _trusted(path: Path) -> bool:
    """An executable file of ours that nobody else may have replaced."""
    try:
        info = path.stat()
    except OSError:
        return False
    writable_by_others = info.st_mode & (stat.S_IWGRP | stat.S_IWOTH)
    return stat.S_ISREG(info.st_mode) and info.st_uid == os.getuid() and not writable_by_others


def _compile(code: bytes, target: Path, compiler: str) -> None:
    cc = shutil.which(compiler)
    if cc is None:
        raise NativeShimUnavailable(f"no C compiler ({compiler}) on PATH")
    private_directory(target.parent)
    tmp = target.with_name(f".{target.name}.{os.getpid()}.{threading.get_ident()}.tmp")
    try:
        try:
            done = subprocess.run(
                [cc, *CFLAGS, "-o", str(tmp), "-x", "c", "-"],  # the very bytes that were hashed
                input=code,
                capture_output=True,
                timeout=_BUILD_TIMEOUT,
                check=False,
            )
        except (OSError, subprocess.TimeoutExpired) as e:
            raise NativeShimUnavailable(f"{cc} could not build {SOURCE.name}: {e}") from e
        if done.returncode != 0:
            lines = done.stderr.decode(errors="replace").strip().splitlines() or ["no message"]
            raise NativeShimUnavailable(f"{cc} could not build {SOURCE.name}: {lines[-1]}")
        tmp.chmod(0o700)
        os.replace(tmp, target)
    finally:
        with contextlib.suppress(FileNotFoundError):
            tmp.unlink()


def _trial(binary: Path) -> None:
    """Run the binary once without arguments: it must answer with its usage (exit status 2)."""
    try:
        done = subprocess.run(
            [str(binary)], capture_output=True, timeout=_TRIAL_TIMEOUT, check=False
        )
    except (OSError, subprocess.TimeoutExpired) as e:
        raise NativeShimUnavailable(f"{binary} does not run: {e}") from e
    if done.returncode != 2 or b"usage: forge-shim" not in done.stderr:
        raise NativeShimUnavailable(f"{binary} does not run (exit status {done.returncode})")
