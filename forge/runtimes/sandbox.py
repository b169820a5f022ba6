"""The sandbox around an attempt's command: bubblewrap (`bwrap`) with a file system view of its own.

Inside, the whole file system is visible read-only; writable are only the attempt's working
directory, the task's declared extra directories (`add_dirs`) and, for a git worktree, the
repository's git directory (a commit writes objects and refs there). `/tmp` is a private tmpfs,
the home directory is the task's own (a directory beside its logs, kept across attempts so that
Claude Code can resume its session), and the daemon's files (`FORGE_HOME`: its logs, its
Redis socket, every other task's worktree) are hidden under an empty tmpfs. The command runs in
new PID and IPC namespaces with no capabilities (root inside cannot remount its way out), and
dies with its parent, the shim. With network "off" it also gets a network namespace of its
own, holding only `lo`; with "api" that namespace is made before bubblewrap runs
(`forge.runtimes.netrelay`), with a relay to the model API's host and port only.
"""

from __future__ import annotations

import functools
import os
import shutil
import subprocess
from collections.abc import Iterable, Sequence
from pathlib import Path

from forge.private_files import private_directory

__all__ = ["NETWORKS", "bwrap_binary", "git_common_dir", "sandbox_argv", "task_home"]

NETWORKS = ("on", "off", "api")
"""What a sandboxed task's network may be: all of it, none (`lo` only), or the model API's host
and port only (relayed: see the module's docstring)."""


def bwrap_binary(search_path: str | None = None) -> str:
    """The bubblewrap executable; raises FileNotFoundError when it is not installed."""
    found = shutil.which("bwrap", path=search_path) or shutil.which("bwrap")
    if found is None:
        raise FileNotFoundError("bubblewrap (bwrap) is not installed: apt-get install bubblewrap")
    return found


def git_common_dir(cwd: str) -> str | None:
    """The repository's git directory when `cwd` is a linked worktree (its `.git` is a file
    naming `<repo>/.git/worktrees/<name>`), else None."""
    try:
        text = Path(cwd, ".git").read_text()
    except OSError:  # not a worktree, or a directory `.git` (inside cwd: writable already)
        return None
    if not text.startswith("gitdir:"):
        return None
    gitdir = Path(cwd, text.split(":", 1)[1].strip())
    try:
        common = (gitdir / "commondir").read_text().strip()
    except OSError:
        return str(gitdir.resolve())
    return str((gitdir / common).resolve())


def task_home(log_path: str) -> str:
    """The task's own home directory (0700), beside its attempt logs: kept across attempts."""
    home = Path(os.path.abspath(log_path)).parent / "home"
    private_directory(home)
    return str(home)


def _under(path: str, parents: Iterable[str]) -> bool:
    return any(path == p or path.startswith(p.rstrip("/") + "/") for p in parents)


def sandbox_argv(
    argv: Sequence[str],
    *,
    bwrap: str,
    cwd: str,
    writable: Sequence[str] = (),
    hidden: Sequence[str] = (),
    home: tuple[str, str] | None = None,
    network: str = "on",
    hosts: str | None = None,
) -> list[str]:
    """`argv` wrapped in bubblewrap. `home` is (the directory to use, where it appears: the
    agent's $HOME); `hidden` directories appear empty; `writable` ones besides `cwd` stay
    writable; a hidden file (the daemon's Redis socket) becomes /dev/null. The program
    `argv[0]`, when it lives under a hidden directory, stays visible.
    Network "api": the caller has made the network namespace (`forge.runtimes.netrelay`);
    `hosts` is the /etc/hosts to show (the API's host name on the relay's address)."""
    if network not in NETWORKS:
        raise ValueError(f"unknown network {network!r} (known: {', '.join(NETWORKS)})")
    cwd = os.path.abspath(cwd)
    masked = [*(h for h in hidden), *([home[1]] if home else []), "/tmp"]
    args = [bwrap, "--die-with-parent", "--unshare-pid", "--unshare-ipc", "--cap-drop", "ALL"]
    args += ["--ro-bind", "/", "/", "--dev", "/dev", "--proc", "/proc", "--tmpfs", "/tmp"]
    if home is not None and home[1] not in ("/", ""):
        args += ["--bind", home[0], home[1]]
    for path in map(os.path.abspath, hidden):
        if os.path.exists(path) and not os.path.isdir(path):  # a file (a socket): /dev/null
            args += ["--ro-bind", "/dev/null", path]
        else:  # a directory: empty
            args += ["--tmpfs", path]
    program = argv[0]
    if os.path.isabs(program):
        real = os.path.realpath(program)
        if _under(program, masked) and not _under(program, [cwd, *writable]):
            parent = os.path.dirname(real)  # an install directory (node modules) comes along
            args += ["--ro-bind", parent, parent]
            if program != real:
                args += ["--ro-bind", real, program]
    for path in dict.fromkeys([cwd, *(os.path.abspath(w) for w in writable)]):
        args += ["--bind", path, path]
    if network == "off":
        args.append("--unshare-net")
    if hosts is not None:
        args += ["--ro-bind", hosts, "/etc/hosts"]
    # bubblewrap dies of a SIGTERM (it forwards none) and takes the sandbox with it: a cancel
    # (the shim's SIGTERM to the command's group, bubblewrap included) could kill the command
    # before its own handler ran. So bubblewrap ignores SIGTERM, and the command gets it back
    # with its default handling (coreutils' env; SIGKILL still ends everything)
    env = _signal_env()
    if env is None:
        return [*args, "--chdir", cwd, "--", *argv]
    inner = [env, "--default-signal=TERM", *argv]
    return [env, "--ignore-signal=TERM", *args, "--chdir", cwd, "--", *inner]


@functools.cache
def _signal_env() -> str | None:
    """coreutils' `env`, if it can set a signal's handling (9.0+: --ignore-signal)."""
    env = shutil.which("env")
    if env is None:
        return None
    try:
        done = subprocess.run(
            [env, "--ignore-signal=TERM", "--default-signal=TERM", "true"],
            capture_output=True,
            timeout=10,
            check=False,
        )
    except (OSError, subprocess.SubprocessError):
        return None
    return env if done.returncode == 0 else None
