"""The embedded server: start, reuse, stale-pid recovery, racing starts, stop, persistence."""

from __future__ import annotations

import os
import shutil
import signal
import stat
import subprocess
import sys
from collections.abc import Iterator
from pathlib import Path

import psutil
import pytest

from forge.errors import ServerError
from forge.server import EmbeddedServer
from tests.conftest import short_tempdir


@pytest.fixture
def home() -> Iterator[Path]:
    path = short_tempdir("fgh")
    yield path
    EmbeddedServer(path).stop()
    shutil.rmtree(path, ignore_errors=True)


def servers_for(server: EmbeddedServer) -> list[psutil.Process]:
    found = []
    for proc in psutil.process_iter(["cmdline"]):
        cmdline = proc.info["cmdline"] or []
        if any(str(server.socket) in part for part in cmdline):
            found.append(proc)
    return found


def test_start_listens_on_a_private_socket_only(home: Path) -> None:
    server = EmbeddedServer(home, appendfsync="always")
    assert server.ensure_running() is True
    mode = stat.S_IMODE(os.stat(server.directory).st_mode)
    assert mode == 0o700
    client = server.client()
    assert client.config_get("port") == {"port": "0"}
    assert client.config_get("appendonly") == {"appendonly": "yes"}
    assert client.config_get("appendfsync") == {"appendfsync": "always"}
    client.close()
    state = server.status()
    assert state.running
    assert state.pid == int(server.pidfile.read_text())
    assert server.logfile.exists()


def test_second_start_reuses_the_running_server(home: Path) -> None:
    server = EmbeddedServer(home)
    server.ensure_running()
    pid = server.status().pid
    assert EmbeddedServer(home).ensure_running() is False
    assert server.status().pid == pid
    assert len(servers_for(server)) == 1


def test_data_survives_a_restart(home: Path) -> None:
    server = EmbeddedServer(home, appendfsync="always")
    server.ensure_running()
    client = server.client()
    client.xadd("log", {"e": b"one"})
    client.close()
    assert server.stop() is True
    assert not server.status().running
    server.ensure_running()
    client = server.client()
    assert client.xlen("log") == 1
    client.close()


def test_stale_pid_and_socket_after_a_crash_are_cleaned(home: Path) -> None:
    server = EmbeddedServer(home)
    server.ensure_running()
    old = server.status().pid
    assert old is not None
    os.kill(old, signal.SIGKILL)
    psutil.Process(old).wait(10) if psutil.pid_exists(old) else None
    state = server.status()
    assert not state.running
    assert state.stale
    assert server.ensure_running() is True
    assert server.status().pid not in (None, old)


def test_pid_file_naming_an_unrelated_process_is_not_trusted(home: Path) -> None:
    server = EmbeddedServer(home)
    server.directory.mkdir(parents=True)
    server.pidfile.write_text(str(os.getpid()))  # a live process, but not a server of ours
    assert not server.status().running
    assert server.ensure_running() is True
    assert server.status().pid != os.getpid()


def test_racing_starts_end_with_exactly_one_server(home: Path) -> None:
    code = (
        "import sys; from pathlib import Path; from forge.server import EmbeddedServer;"
        "print(EmbeddedServer(Path(sys.argv[1])).ensure_running())"
    )
    procs = [
        subprocess.Popen([sys.executable, "-c", code, str(home)], stdout=subprocess.PIPE, text=True)
        for _ in range(6)
    ]
    results = [p.communicate(timeout=60)[0].strip() for p in procs]
    assert all(p.returncode == 0 for p in procs)
    assert results.count("True") == 1
    assert results.count("False") == 5
    assert len(servers_for(EmbeddedServer(home))) == 1


def test_stop_when_not_running_says_so(home: Path) -> None:
    assert EmbeddedServer(home).stop() is False


def test_too_deep_a_home_is_a_clear_error(tmp_path: Path) -> None:
    deep = tmp_path / ("d" * 120)
    with pytest.raises(ServerError, match="too deep for a unix socket"):
        EmbeddedServer(deep).ensure_running()
