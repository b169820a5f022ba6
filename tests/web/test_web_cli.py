"""`forge web` and `forge daemon start --web PORT` as a person runs them: real processes, a real
daemon running a real command, and the dashboard's JSON read with the printed token."""

from __future__ import annotations

import http.client
import json
import re
import signal
import socket
import subprocess
import sys
import urllib.error
import urllib.request
from collections.abc import Iterator
from typing import Any

import pytest

from forge.server import EmbeddedServer
from tests.daemon.conftest import DaemonHarness


@pytest.fixture
def daemons(embedded_server: EmbeddedServer) -> Iterator[DaemonHarness]:
    h = DaemonHarness(embedded_server)
    yield h
    h.cleanup()


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


def _get(url: str, token: str) -> Any:
    request = urllib.request.Request(url, headers={"X-Forge-Token": token})
    with urllib.request.urlopen(request, timeout=10) as response:
        return json.loads(response.read())


def test_the_daemon_serves_the_dashboard_of_its_running_tasks(daemons: DaemonHarness) -> None:
    port = _free_port()
    started = daemons.forge("daemon", "start", "--web", str(port))
    assert started.returncode == 0, started.stderr
    found = re.search(rf"dashboard: (http://127\.0\.0\.1:{port}/)\?token=(\S+)", started.stdout)
    assert found is not None, started.stdout
    base, token = found.groups()
    submitted = daemons.forge("task", "submit", "--command", "sleep 30")
    task_id = submitted.stdout.strip()
    daemons.wait_for(
        "the dashboard to show the task running",
        lambda: any(r["task_id"] == task_id for r in _get(base + "api/fleet", token)["running"]),
    )
    echoed = daemons.forge("task", "submit", "--command", "echo output-of-the-task").stdout.strip()
    daemons.wait_for(
        "the task page to show the task's output",
        lambda: "output-of-the-task" in _get(base + f"api/task/{echoed}/output", token)["lines"],
    )
    log = (daemons.home / "daemon.log").read_text()
    assert token not in log  # printed to the person who started it, never logged
    stopped = daemons.forge("daemon", "stop", "--force")
    assert stopped.returncode == 0, stopped.stderr
    with pytest.raises(urllib.error.URLError):  # the dashboard ended with the daemon
        _get(base + "api/fleet", token)


def test_a_port_in_use_is_one_clear_error(daemons: DaemonHarness) -> None:
    with socket.socket() as taken:
        taken.bind(("127.0.0.1", 0))
        taken.listen(1)
        port = taken.getsockname()[1]
        done = daemons.forge("web", "--port", str(port))
    assert done.returncode == 1
    assert done.stderr.strip() == f"Error: cannot listen on 127.0.0.1:{port}: the port is in use"


def test_a_short_token_is_refused(daemons: DaemonHarness) -> None:
    daemons.env["FORGE_WEB_TOKEN"] = "short"
    done = daemons.forge("web", "--port", "0")
    assert done.returncode != 0
    errors = [line for line in done.stderr.splitlines() if line.startswith("Error")]
    assert errors == [
        "Error: Invalid value: FORGE_WEB_TOKEN must be at least 16 ASCII characters with no space"
    ]
    assert "Traceback" not in done.stderr


def test_ctrl_c_ends_open_pages_and_the_server_cleanly(daemons: DaemonHarness) -> None:
    proc = subprocess.Popen(
        [sys.executable, "-m", "forge", "web", "--port", "0"],
        env=daemons.env,
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
    )
    assert proc.stdout is not None
    found = re.search(r"127\.0\.0\.1:(\d+)/\?token=(\S+)", proc.stdout.readline())
    assert found is not None
    page = http.client.HTTPConnection("127.0.0.1", int(found[1]), timeout=30)
    page.request("GET", "/api/stream", headers={"X-Forge-Token": found[2]})
    stream = page.getresponse()
    assert stream.status == 200
    assert stream.readline().startswith(b"event: hello")  # the page is following the log
    proc.send_signal(signal.SIGINT)
    _, errors = proc.communicate(timeout=30)
    proc.stdout.close()
    page.close()
    assert proc.returncode == 0, errors
    assert "Exception" not in errors
    assert "timeout graceful shutdown exceeded" not in errors  # the stream ended at once
    assert found[2] not in errors  # the token is in no log line
