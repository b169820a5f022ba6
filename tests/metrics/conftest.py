"""Fixtures of the metrics tests: a daemon harness with a free metrics port, on the session's
server or on an embedded server of its own (which a test may stop with SIGSTOP)."""

from __future__ import annotations

import contextlib
import json
import os
import signal
import socket
import urllib.error
import urllib.request
from collections.abc import Iterator
from typing import Any

import pytest
from prometheus_client.parser import text_string_to_metric_families

from forge.daemon_process import DaemonFiles
from forge.server import EmbeddedServer
from tests.conftest import short_tempdir
from tests.daemon.conftest import DaemonHarness


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


_DIRECT = urllib.request.build_opener(urllib.request.ProxyHandler({}))  # no proxy for localhost


def get(port: int, path: str) -> tuple[int, str]:
    """(status, body) of a GET on the metrics port; status 0 while nothing listens."""
    try:
        with _DIRECT.open(f"http://127.0.0.1:{port}{path}", timeout=10) as reply:
            return reply.status, reply.read().decode()
    except urllib.error.HTTPError as e:
        return e.code, e.read().decode()
    except urllib.error.URLError as e:
        if isinstance(e.reason, ConnectionRefusedError):
            return 0, "{}"
        raise


def health(port: int, path: str) -> tuple[int, dict[str, Any]]:
    status, body = get(port, path)
    return status, json.loads(body)


def samples(port: int) -> dict[tuple[str, tuple[tuple[str, str], ...]], float]:
    """Every sample of /metrics: (name, sorted labels) -> value."""
    status, body = get(port, "/metrics")
    assert status == 200, body
    return {
        (s.name, tuple(sorted(s.labels.items()))): s.value
        for family in text_string_to_metric_families(body)
        for s in family.samples
    }


@pytest.fixture
def metered(embedded_server: EmbeddedServer) -> Iterator[tuple[DaemonHarness, int]]:
    """A harness on the session's server whose daemons serve metrics on a free port."""
    h = DaemonHarness(embedded_server)
    port = free_port()
    h.env["FORGE_METRICS_PORT"] = str(port)
    yield h, port
    h.cleanup()


@pytest.fixture
def private_metered() -> Iterator[tuple[DaemonHarness, EmbeddedServer, int]]:
    """A metered harness whose daemon uses an embedded server of its own FORGE_HOME, with a
    1 s Redis timeout."""
    home = short_tempdir("fgm")
    server = EmbeddedServer(home)
    server.ensure_running()
    h = DaemonHarness(server)
    h.home = home
    h.files = DaemonFiles(home)
    del h.env["FORGE_REDIS_URL"]
    port = free_port()
    h.env |= {
        "FORGE_HOME": str(home),
        "FORGE_REDIS_CONNECT_TIMEOUT": "1",
        "FORGE_METRICS_PORT": str(port),
    }
    try:
        yield h, server, port
    finally:
        with contextlib.suppress(ProcessLookupError, FileNotFoundError, ValueError):
            os.kill(int(server.pidfile.read_text()), signal.SIGCONT)
        h.cleanup()
        server.stop()
