"""Starting a shim: `posix_spawn` in a session of its own, without holding the GIL meanwhile.

`os.posix_spawn` keeps the GIL while the kernel creates the process and, with glibc's vfork-like
spawn, until the new program has been loaded: every other thread of the daemon (the actors, the
log readers) waits, for a millisecond or more on a busy machine. With eight agents running
short shell tasks that was close to half of the daemon's time. The same libc call made through
ctypes releases the GIL; `os.posix_spawn` remains the fallback where libc cannot be reached so.
"""

from __future__ import annotations

import contextlib
import ctypes
import os
from collections.abc import Sequence
from typing import Any

__all__ = ["spawn_detached"]

_POSIX_SPAWN_SETSID = 0x80  # <spawn.h> of glibc and musl (Linux)
# opaque libc structures, allocated generously: glibc needs 80 and 336 bytes
_FileActions = ctypes.c_char * 512
_Attributes = ctypes.c_char * 1024


def _libc() -> Any:
    with contextlib.suppress(OSError, AttributeError):
        libc = ctypes.CDLL(None, use_errno=True)
        for name in (
            "posix_spawn",
            "posix_spawn_file_actions_init",
            "posix_spawn_file_actions_adddup2",
            "posix_spawn_file_actions_addopen",
            "posix_spawn_file_actions_destroy",
            "posix_spawnattr_init",
            "posix_spawnattr_setflags",
            "posix_spawnattr_destroy",
        ):
            getattr(libc, name)
        return libc
    return None


_LIBC = _libc() if hasattr(os, "POSIX_SPAWN_DUP2") and os.uname().sysname == "Linux" else None


def spawn_detached(path: str, argv: Sequence[str], stdin_fd: int, stderr_fd: int) -> int:
    """Start `path` with `argv`, an empty environment, stdin from `stdin_fd`, stdout to
    /dev/null and stderr to `stderr_fd`, as the leader of a new session; its PID.

    Raises OSError when the program cannot be started, ValueError (as `os.posix_spawn` does)
    when an argument holds a NUL byte: C would cut it short there and run something else."""
    encoded = [os.fsencode(a) for a in (path, *argv)]
    if any(b"\0" in a for a in encoded):
        raise ValueError("embedded null byte")
    if _LIBC is None:
        return os.posix_spawn(
            path,
            list(argv),
            {},
            file_actions=[
                (os.POSIX_SPAWN_DUP2, stdin_fd, 0),
                (os.POSIX_SPAWN_OPEN, 1, os.devnull, os.O_WRONLY, 0),
                (os.POSIX_SPAWN_DUP2, stderr_fd, 2),
            ],
            setsid=True,
        )
    actions, attributes = _FileActions(), _Attributes()
    args = (ctypes.c_char_p * (len(argv) + 1))(*encoded[1:], None)
    no_env = (ctypes.c_char_p * 1)(None)
    pid = ctypes.c_int(0)
    _check(_LIBC.posix_spawn_file_actions_init(actions), path)
    try:
        _check(_LIBC.posix_spawnattr_init(attributes), path)
        try:
            _check(_LIBC.posix_spawn_file_actions_adddup2(actions, stdin_fd, 0), path)
            devnull = os.fsencode(os.devnull)
            _check(
                _LIBC.posix_spawn_file_actions_addopen(actions, 1, devnull, os.O_WRONLY, 0), path
            )
            _check(_LIBC.posix_spawn_file_actions_adddup2(actions, stderr_fd, 2), path)
            flags = ctypes.c_short(_POSIX_SPAWN_SETSID)
            _check(_LIBC.posix_spawnattr_setflags(attributes, flags), path)
            # the GIL is released for the length of this call (ctypes.CDLL)
            program = os.fsencode(path)
            error = _LIBC.posix_spawn(ctypes.byref(pid), program, actions, attributes, args, no_env)
            _check(error, path)
        finally:
            _LIBC.posix_spawnattr_destroy(attributes)
    finally:
        _LIBC.posix_spawn_file_actions_destroy(actions)
    return pid.value


def _check(error: int, path: str) -> None:
    if error != 0:
        raise OSError(error, os.strerror(error), path)
