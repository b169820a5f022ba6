"""Shared fixtures: one real embedded server per test session, on a private short socket path.

Unix socket paths are limited to 107 bytes, so the server's FORGE_HOME is a short directory
under /tmp rather than pytest's deep tmp_path.
"""

from __future__ import annotations

import contextlib
import os
import shutil
import tempfile
from collections.abc import Iterator
from pathlib import Path

import pykka
import pytest
import redis

from events.redact import forget_secrets
from forge.server import EmbeddedServer
from tests.mock_anthropic import MockAnthropic


def short_tempdir(prefix: str = "fg") -> Path:
    """A fresh directory with a short path (unix socket paths must stay under 108 bytes)."""
    return Path(tempfile.mkdtemp(prefix=prefix, dir="/tmp"))


@pytest.fixture(scope="session")
def server_home() -> Iterator[Path]:
    home = short_tempdir("fgs")
    yield home
    shutil.rmtree(home, ignore_errors=True)


@pytest.fixture(scope="session")
def embedded_server(server_home: Path) -> Iterator[EmbeddedServer]:
    """The session's real Valkey server (started once, stopped at the end)."""
    server = EmbeddedServer(server_home)
    server.ensure_running()
    yield server
    server.stop()


@pytest.fixture
def redis_client(embedded_server: EmbeddedServer) -> Iterator[redis.Redis]:
    """A client of the session server, on an empty database."""
    client = embedded_server.client()
    client.flushall()
    yield client
    client.close()


@pytest.fixture
def forge_env(embedded_server: EmbeddedServer, monkeypatch: pytest.MonkeyPatch) -> dict[str, str]:
    """Environment for running Forge against the session server (FORGE_HOME shared with it)."""
    home = embedded_server.directory.parent
    monkeypatch.setenv("FORGE_HOME", str(home))
    for name in list(os.environ):
        if name.startswith("FORGE_") and name != "FORGE_HOME":
            monkeypatch.delenv(name)
    client = embedded_server.client()
    client.flushall()
    client.close()
    return {"FORGE_HOME": str(home)}


@pytest.fixture(autouse=True)
def _clean_secrets() -> Iterator[None]:
    yield
    forget_secrets()


@pytest.fixture
def mock() -> Iterator[MockAnthropic]:
    """The suite's mock of the Anthropic Messages API, on 127.0.0.1 (script its replies)."""
    with MockAnthropic() as server:
        yield server


def pytest_sessionfinish(session: pytest.Session, exitstatus: int) -> None:
    """Stop every actor a test left running: pykka's threads are not daemon threads, so one
    left behind (a fleet whose stop timed out) would keep the test process from exiting."""
    with contextlib.suppress(Exception):
        pykka.ActorRegistry.stop_all(block=True, timeout=10)
