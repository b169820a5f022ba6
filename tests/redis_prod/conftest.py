"""Fixtures of the production-Redis tests: real redis-server/redis-sentinel processes on free
loopback ports (tests/redis_prod/servers.py), and `forge` run as a user would run it."""

from __future__ import annotations

import os
import subprocess
import sys
from collections.abc import Iterator
from pathlib import Path

import pytest

from tests.redis_prod.servers import RedisSet


@pytest.fixture
def servers() -> Iterator[RedisSet]:
    """Servers of one test; all stopped and their directories removed at teardown."""
    found = RedisSet()
    yield found
    found.close()


def forge_env(home: Path, url: str, **settings: str) -> dict[str, str]:
    """The environment of a `forge` process on `url`: no FORGE_* variable but these."""
    env = {k: v for k, v in os.environ.items() if not k.startswith(("FORGE_", "PYTEST_"))}
    env |= {"FORGE_HOME": str(home), "FORGE_REDIS_URL": url}
    env |= {f"FORGE_REDIS_{name.upper()}": value for name, value in settings.items()}
    return env


def forge(env: dict[str, str], *args: str, timeout: float = 60) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [sys.executable, "-m", "forge", *args],
        env=env,
        capture_output=True,
        text=True,
        timeout=timeout,
        check=False,
    )


def one_error_line(result: subprocess.CompletedProcess[str]) -> str:
    """The single line a failed command prints (exit 1, no traceback)."""
    assert result.returncode == 1, (result.stdout, result.stderr)
    lines = result.stderr.splitlines()
    assert len(lines) == 1, result.stderr
    assert lines[0].startswith("Error: "), result.stderr
    return lines[0]
