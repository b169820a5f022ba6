"""The CLI of the foundation: help, config, server, external Redis, errors, and secrets."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

import pytest
from click.testing import CliRunner

from forge import __version__
from forge.cli.main import cli
from forge.server import EmbeddedServer
from tests.conftest import short_tempdir

GROUPS = ["task", "agent", "config", "daemon", "events", "server", "status"]


def run(args: list[str], env: dict[str, str] | None = None) -> tuple[int, str, str]:
    result = CliRunner().invoke(cli, args, env=env, catch_exceptions=False)
    return result.exit_code, result.stdout, result.stderr


def forge_process(
    args: list[str], env: dict[str, str], timeout: float = 60
) -> subprocess.CompletedProcess[str]:
    full_env = {k: v for k, v in os.environ.items() if not k.startswith("FORGE_")}
    full_env.update(env)
    return subprocess.run(
        [sys.executable, "-m", "forge", *args],
        env=full_env,
        capture_output=True,
        text=True,
        timeout=timeout,
        check=False,
    )


def test_help_for_every_group() -> None:
    code, out, _ = run(["--help"])
    assert code == 0
    for group in GROUPS:
        assert group in out
        code, out_group, _ = run([group, "--help"])
        assert code == 0, group
        assert "Usage: " in out_group


def test_version() -> None:
    code, out, _ = run(["--version"])
    assert code == 0
    assert __version__ in out


def test_usage_errors_exit_2() -> None:
    code, _, err = run(["no-such-command"])
    assert code == 2
    assert "No such command" in err
    code, _, _ = run(["--log-level", "shouty", "status"])
    assert code == 2


def test_config_show_json_reflects_environment(tmp_path: Path) -> None:
    env = {"FORGE_HOME": str(tmp_path), "FORGE_ORCHESTRATOR_MAX_CONCURRENT_AGENTS": "3"}
    code, out, _ = run(["config", "show", "--json"], env)
    assert code == 0
    data = json.loads(out)
    assert data["orchestrator"]["max_concurrent_agents"] == 3
    assert data["home"] == str(tmp_path)


def test_config_validate_lists_every_problem_and_exits_1(tmp_path: Path) -> None:
    bad = tmp_path / "bad.toml"
    bad.write_text('[orchestrator]\nmax_concurrent_agents = 0\n[logging]\nlevel = "x"\n')
    code, _, err = run(["config", "validate", str(bad)], {"FORGE_HOME": str(tmp_path)})
    assert code == 1
    lines = err.strip().splitlines()
    assert len(lines) == 2
    assert any("orchestrator.max_concurrent_agents" in line for line in lines)
    assert any("logging.level" in line for line in lines)


def test_config_init_then_validate(tmp_path: Path) -> None:
    env = {"FORGE_HOME": str(tmp_path)}
    code, out, _ = run(["config", "init"], env)
    assert code == 0
    assert (tmp_path / "config.toml").exists()
    code, _, err = run(["config", "init"], env)
    assert code == 1
    assert "already exists" in err
    code, out, _ = run(["config", "validate"], env)
    assert code == 0
    assert "valid" in out


def test_invalid_config_is_one_line_exit_1(tmp_path: Path) -> None:
    (tmp_path / "config.toml").write_text("[retry]\nmax_attempts = 0\n")
    code, _, err = run(["status"], {"FORGE_HOME": str(tmp_path)})
    assert code == 1
    assert err.count("\n") == 1
    assert "retry.max_attempts" in err


def test_external_url_is_used_and_nothing_is_started(embedded_server: EmbeddedServer) -> None:
    home = short_tempdir("fgx")
    env = {"FORGE_HOME": str(home), "FORGE_REDIS_URL": f"unix://{embedded_server.socket}"}
    code, out, _ = run(["status", "--json"], env)
    assert code == 0
    assert json.loads(out)["redis"] == f"unix://{embedded_server.socket}"
    assert not (home / "server").exists()
    code, _, err = run(["server", "start"], env)
    assert code == 1
    assert "manages no embedded one" in err


def test_unreachable_redis_is_one_line_without_password(tmp_path: Path) -> None:
    env = {
        "FORGE_HOME": str(tmp_path),
        "FORGE_REDIS_URL": "redis://forge:pw-canary-77@127.0.0.1:1/0",
        "FORGE_REDIS_CONNECT_TIMEOUT": "1",
    }
    proc = forge_process(["status"], env)
    assert proc.returncode == 1
    assert proc.stderr.startswith("Error: cannot reach Redis at redis://forge:***@127.0.0.1:1/0: ")
    assert proc.stderr.count("\n") == 1
    assert "Traceback" not in proc.stderr
    assert "pw-canary-77" not in proc.stdout + proc.stderr


def test_server_commands_through_real_processes() -> None:
    home = short_tempdir("fgc")
    env = {"FORGE_HOME": str(home)}
    try:
        status = forge_process(["server", "status"], env)
        assert status.returncode == 1
        assert "stopped" in status.stdout
        start = forge_process(["server", "start"], env)
        assert start.returncode == 0, start.stderr
        assert "started" in start.stdout
        again = forge_process(["server", "start"], env)
        assert "already running" in again.stdout
        status = forge_process(["server", "status", "--json"], env)
        assert status.returncode == 0
        assert json.loads(status.stdout)["running"] is True
        stop = forge_process(["server", "stop"], env)
        assert stop.stdout.strip() == "stopped"
        assert not EmbeddedServer(home).status().running
    finally:
        EmbeddedServer(home).stop()


def test_commands_needing_redis_start_the_embedded_server() -> None:
    home = short_tempdir("fga")
    try:
        proc = forge_process(["status", "--json"], {"FORGE_HOME": str(home)})
        assert proc.returncode == 0, proc.stderr
        assert EmbeddedServer(home).status().running
    finally:
        EmbeddedServer(home).stop()


@pytest.mark.parametrize("command", [["config", "show"], ["config", "show", "--json"], ["status"]])
def test_canary_secret_never_printed(embedded_server: EmbeddedServer, command: list[str]) -> None:
    home = short_tempdir("fgk")
    canary = "CANARY-s3cr3t-4242"
    (home / "config.toml").write_text(f'[redis]\npassword = "{canary}"\n')
    env = {
        "FORGE_HOME": str(home),
        # a password in the URL: the server's default user has no password, so any is accepted
        "FORGE_REDIS_URL": f"unix://default:{canary}@{embedded_server.socket}",
        "ANTHROPIC_API_KEY": canary,
        "FORGE_LOG_LEVEL": "debug",
    }
    proc = forge_process(command, env)
    assert proc.returncode == 0, proc.stderr
    assert canary not in proc.stdout
    assert canary not in proc.stderr
