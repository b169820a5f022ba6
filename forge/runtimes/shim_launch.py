"""Launching the shim an attempt runs under, and finding one that no event names.

`launch` starts the shim (the C one when it builds, else the Python one: see
`forge.runtimes.native_shim`) in a session of its own with `posix_spawn`, hands it the
command's exact environment over a pipe, and says where the run's log starts. `find_shim` finds
a shim by the log it writes, for a daemon that died between starting an attempt and recording it.
"""

from __future__ import annotations

import contextlib
import json
import os
import time
from collections.abc import Iterable, Mapping, Sequence

import psutil

from forge.private_files import private_directory
from forge.runtimes import native_shim
from forge.runtimes.logfile import (
    exit_record_path_for,
    read_status,
    record_path_for,
    status_path_for,
)
from forge.runtimes.spawn import spawn_detached

__all__ = ["SHIM_PATH", "find_shim", "launch", "shim_command"]

SHIM_PATH = str(native_shim.PYTHON_SHIM)
shim_command = native_shim.shim_command  # the argv prefix of the shim (tests pick one here)


def launch(
    argv: Sequence[str],
    *,
    log_path: str,
    env: Mapping[str, str],
    cwd: str | None,
    timeout: float | None,
    grace: float,
    mask_env: Iterable[str],
) -> tuple[int, float, str, int]:
    """Start `argv` under the shim with exactly `env`: (pid, create time, absolute log path,
    the log's size before the run). Raises OSError if the shim cannot start."""
    log_path = os.path.abspath(log_path)
    status_path = status_path_for(log_path)
    private_directory(os.path.dirname(log_path))  # 0700: attempt logs may hold anything
    record_path = record_path_for(log_path)
    exit_path = exit_record_path_for(log_path)
    for stale in (status_path, record_path, exit_path):  # a stale status would end the new run
        with contextlib.suppress(FileNotFoundError):
            os.unlink(stale)
    shim_args = ["--status", status_path, "--record", record_path, "--exit-record", exit_path]
    shim_args += ["--log", log_path, "--cwd", os.path.abspath(cwd or os.getcwd())]
    shim_args += ["--grace", repr(grace), "--env-stdin"]
    if timeout is not None:
        shim_args += ["--timeout", repr(timeout)]
    for name in mask_env:
        shim_args += ["--mask-env", name]
    shim_args += ["--", *argv]
    log_fd = os.open(log_path, os.O_WRONLY | os.O_APPEND | os.O_CREAT, 0o600)
    offset = os.fstat(log_fd).st_size
    env_read, env_write = os.pipe()
    try:
        pid = _spawn_shim(shim_args, env_read, log_fd)
    except BaseException:
        os.close(env_write)
        raise
    finally:
        os.close(env_read)
        os.close(log_fd)
    try:
        _write_all(env_write, json.dumps(dict(env)).encode())
    except BrokenPipeError:
        pass  # the shim died at start-up; the run reports it as vanished
    finally:
        os.close(env_write)
    try:
        create_time = psutil.Process(pid).create_time()  # our child: not reaped yet
    except psutil.Error:
        create_time = time.time()
    return pid, create_time, log_path, offset


def _spawn_shim(shim_args: list[str], env_read: int, log_fd: int) -> int:
    """Start the shim in a session of its own; the Python shim if the C one cannot start.

    The shim needs no environment of its own: the command's comes over the pipe on its stdin.
    Its stderr is the log, for its own errors if any."""
    shim = shim_command()
    try:
        return spawn_detached(shim[0], [*shim, *shim_args], env_read, log_fd)
    except OSError as e:
        if shim == native_shim.python_command():
            raise
        shim = native_shim.shim_fallback(f"{shim[0]} cannot start: {e}")
    return spawn_detached(shim[0], [*shim, *shim_args], env_read, log_fd)


def _write_all(fd: int, data: bytes) -> None:
    view = memoryview(data)
    while view:
        view = view[os.write(fd, view) :]


def _is_shim(cmdline: list[str]) -> bool:
    """Whether a command line is a shim's: the Python shim, or any version of the C one."""
    if SHIM_PATH in cmdline:
        return True
    return bool(cmdline) and os.path.basename(cmdline[0]).startswith(native_shim.NATIVE_PREFIX)


def find_shim(log_path: str) -> tuple[int, float] | None:
    """The (pid, create time) of a live shim writing `log_path`, found by its command line.

    A daemon that died between starting an attempt and recording its start leaves a shim that
    nothing in the log names; the next daemon finds it here (or its status file, if it has
    ended since, or its exit record, if it was killed after the command ended) and adopts it
    instead of running the attempt a second time."""
    target = os.path.abspath(log_path)
    status = read_status(status_path_for(target))
    if status is not None and status.pid:  # it ended while nobody watched: adopt the record
        return status.pid, 0.0
    for proc in psutil.process_iter(["cmdline", "create_time"]):
        cmdline = proc.info.get("cmdline") or []
        if not _is_shim(cmdline) or "--log" not in cmdline:
            continue
        at = cmdline.index("--log")
        if at + 1 < len(cmdline) and cmdline[at + 1] == target:
            return proc.pid, float(proc.info["create_time"])
    ended = read_status(status_path_for(target))  # ended during the scan?
    if ended is None and (ended := read_status(exit_record_path_for(target))) is None:
        return None
    return (ended.pid, 0.0) if ended.pid else None
