"""What the tests that run the REAL claude binary share: the binary, the marker that skips them
without it, and the environment that points an agent at the suite's mock Messages API."""

from __future__ import annotations

import shutil

import pytest

from forge.runtimes.claude import ClaudeRuntime
from forge.runtimes.claude_command import bundled_binary
from tests.mock_anthropic import DEFAULT_MODEL, MockAnthropic

BINARY = shutil.which("claude") or bundled_binary()

needs_claude = pytest.mark.skipif(BINARY is None, reason="no claude binary (install forge[claude])")


def agent_environ(mock: MockAnthropic, api_key: str, retries: int = 1) -> dict[str, str]:
    """An agent's environment: the key, the mock's URL, the CLI's own retries cut short, and
    nothing that would try to reach the internet."""
    return {
        "ANTHROPIC_API_KEY": api_key,
        "ANTHROPIC_BASE_URL": mock.url,
        "CLAUDE_CODE_MAX_RETRIES": str(retries),
        "CLAUDE_CODE_DISABLE_NONESSENTIAL_TRAFFIC": "1",
        "DISABLE_TELEMETRY": "1",
    }


def claude_runtimes(
    mock: MockAnthropic, api_key: str, retries: int = 1
) -> dict[str, ClaudeRuntime]:
    """The runtimes of a fleet whose claude agents talk to `mock`."""
    runtime = ClaudeRuntime(
        BINARY,
        default_model=DEFAULT_MODEL,
        environ=agent_environ(mock, api_key, retries),
        progress_interval=0.0,
    )
    return {"claude": runtime}
