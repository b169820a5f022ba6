"""A live embedded server that does not answer (SIGSTOP) never gets a twin: commands fail fast
in one line, `server status` says so, `server stop` needs `--force`, and all is well after
SIGCONT."""

from __future__ import annotations

import json
import os
import shutil
import signal
import subprocess
import sys
from collections.abc import Iterator
from pathlib import Path

import psutil
import pytest

from forge.errors import ServerNotAnswering, StoreUnavailable
from forge.server import EmbeddedServer
from tests.conftest import short_tempdir

# a silent server is given this long to answer; short, so that the tests stay quick
ANSWER_TIMEOUT = 0.5


class Stalled:
    """A private home whose server is stopped with SIGSTOP (and continued at teardown)."""

    def __init__(self, home: Path) -> None:
        self.home = home
        self.server = EmbeddedServer(home, appendfsync="always")
        self.server.ensure_running()
        self.proc = psutil.Process(int(self.server.pidfile.read_text()))

    def stop(self) -> None:
        self.proc.send_signal(signal.SIGSTOP)

    def resume(self) -> None:
        if self.proc.is_running():
            self.proc.send_signal(signal.SIGCONT)

    def servers(self) -> list[psutil.Process]:
        """Every valkey/redis process on this home's socket."""
        found = []
        for proc in psutil.process_iter(["name", "cmdline", "status"]):
            if proc.info["status"] == psutil.STATUS_ZOMBIE:
                continue
            if proc.info["name"] not in ("valkey-server", "redis-server"):
                continue
            if any(str(self.server.socket) in part for part in proc.info["cmdline"] or []):
                found.append(proc)
        return found

    def forge(self, *args: str) -> subprocess.CompletedProcess[str]:
        env = {k: v for k, v in os.environ.items() if not k.startswith("FORGE_")}
        env["FORGE_HOME"] = str(self.home)
        env["FORGE_REDIS_CONNECT_TIMEOUT"] = str(ANSWER_TIMEOUT)
        return subprocess.run(
            [sys.executable, "-m", "forge", *args],
            env=env,
            capture_output=True,
            text=True,
            timeout=60,
            check=False,
        )


@pytest.fixture
def stalled() -> Iterator[Stalled]:
    home = short_tempdir("fgz")
    state = Stalled(home)
    try:
        yield state
    finally:
        state.resume()
        EmbeddedServer(home).stop(force=True)
        shutil.rmtree(home, ignore_errors=True)


def test_commands_on_a_stopped_server_fail_in_one_line_and_start_no_twin(
    stalled: Stalled,
) -> None:
    stalled.stop()
    for command in (["task", "list"], ["server", "start"]):
        proc = stalled.forge(*command)
        assert proc.returncode == 1, (command, proc.stdout, proc.stderr)
        lines = proc.stderr.strip().splitlines()
        assert len(lines) == 1, proc.stderr
        assert f"(pid {stalled.proc.pid}) is not answering on {stalled.server.socket}" in lines[0]
        assert "forge server stop --force" in lines[0]
        assert stalled.servers() == [stalled.proc]

    status = stalled.forge("server", "status")
    assert status.returncode == 1
    assert f"running, not answering (pid {stalled.proc.pid}" in status.stdout
    as_json = json.loads(stalled.forge("server", "status", "--json").stdout)
    assert as_json["running"] is True
    assert as_json["answering"] is False
    assert stalled.servers() == [stalled.proc]

    stalled.resume()
    listed = stalled.forge("task", "list")
    assert listed.returncode == 0, listed.stderr
    status = stalled.forge("server", "status", "--json")
    assert status.returncode == 0
    assert json.loads(status.stdout)["pid"] == stalled.proc.pid
    assert stalled.servers() == [stalled.proc]


def test_a_server_that_lost_its_pid_file_is_still_found(stalled: Stalled) -> None:
    stalled.stop()
    stalled.server.pidfile.unlink()
    with pytest.raises(ServerNotAnswering, match="not answering") as caught:
        EmbeddedServer(stalled.home).ensure_running(ANSWER_TIMEOUT)
    assert isinstance(caught.value, StoreUnavailable)  # what the daemon retries on
    state = stalled.server.status()
    assert (state.running, state.answering, state.pid) == (True, False, stalled.proc.pid)
    assert stalled.servers() == [stalled.proc]

    stalled.resume()
    assert EmbeddedServer(stalled.home).ensure_running(ANSWER_TIMEOUT) is False
    assert stalled.servers() == [stalled.proc]
    assert EmbeddedServer(stalled.home).stop() is True
    assert stalled.servers() == []


def test_racing_starts_on_a_stopped_server_all_fail_and_start_nothing(stalled: Stalled) -> None:
    stalled.stop()
    code = (
        "import sys; from pathlib import Path; from forge.server import EmbeddedServer;"
        f"EmbeddedServer(Path(sys.argv[1])).ensure_running({ANSWER_TIMEOUT})"
    )
    procs = [
        subprocess.Popen(
            [sys.executable, "-c", code, str(stalled.home)], stderr=subprocess.PIPE, text=True
        )
        for _ in range(3)
    ]
    errors = [p.communicate(timeout=60)[1] for p in procs]
    assert all(p.returncode == 1 for p in procs)
    assert all("ServerNotAnswering" in error for error in errors)
    assert stalled.servers() == [stalled.proc]


def test_stop_leaves_a_silent_server_alone_unless_forced(stalled: Stalled) -> None:
    client = stalled.server.client()
    client.xadd("log", {"e": b"kept"})
    client.close()
    stalled.stop()

    refused = stalled.forge("server", "stop")
    assert refused.returncode == 1
    assert "not answering" in refused.stderr
    assert stalled.servers() == [stalled.proc]

    forced = stalled.forge("server", "stop", "--force")
    assert forced.returncode == 0, forced.stderr
    assert forced.stdout.strip() == "stopped"
    assert stalled.servers() == []
    assert not stalled.server.status().running

    assert stalled.server.ensure_running() is True
    client = stalled.server.client()
    assert client.xlen("log") == 1
    client.close()
