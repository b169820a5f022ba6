"""Settings: precedence of the layers and every validation error path."""

from __future__ import annotations

from pathlib import Path

import msgspec
import pytest

from forge.errors import ConfigError
from forge.settings import (
    Settings,
    load_settings,
    secret_values,
    validate_file,
)
from forge.settings_docs import default_config_text


def write(path: Path, text: str) -> Path:
    path.write_text(text)
    return path


def test_defaults_match_the_design(tmp_path: Path) -> None:
    settings = load_settings(environ={"FORGE_HOME": str(tmp_path)})
    assert settings.home == str(tmp_path)
    assert settings.orchestrator.max_concurrent_agents == 5
    assert settings.orchestrator.health_check_interval == 30.0
    assert (settings.breaker.failure_threshold, settings.breaker.success_threshold) == (5, 2)
    assert settings.breaker.open_timeout == 60.0
    assert settings.redis.url is None
    assert settings.redis.appendfsync == "everysec"


def test_file_then_environment_then_flags(tmp_path: Path) -> None:
    write(
        tmp_path / "config.toml",
        "[orchestrator]\nmax_concurrent_agents = 7\nhealth_check_interval = 10\n"
        "[retry]\nmax_attempts = 4\n",
    )
    env = {"FORGE_HOME": str(tmp_path), "FORGE_ORCHESTRATOR_MAX_CONCURRENT_AGENTS": "9"}
    settings = load_settings(environ=env)
    assert settings.orchestrator.max_concurrent_agents == 9  # env beats file
    assert settings.orchestrator.health_check_interval == 10.0  # file beats default
    assert settings.retry.max_attempts == 4
    flagged = load_settings(environ=env, overrides={"orchestrator.max_concurrent_agents": 11})
    assert flagged.orchestrator.max_concurrent_agents == 11  # flag beats env
    text_flag = load_settings(environ=env, overrides={"logging.level": "debug"})
    assert text_flag.logging.level == "debug"


def test_explicit_config_file_and_aliases(tmp_path: Path) -> None:
    other = write(tmp_path / "other.toml", '[logging]\nlevel = "warning"\n')
    settings = load_settings(other, environ={"FORGE_HOME": str(tmp_path)})
    assert settings.logging.level == "warning"
    aliased = load_settings(
        other, environ={"FORGE_HOME": str(tmp_path), "FORGE_LOG_LEVEL": "error"}
    )
    assert aliased.logging.level == "error"
    listed = load_settings(
        environ={"FORGE_HOME": str(tmp_path), "FORGE_RUNTIME_ENV_ALLOWLIST": "PATH, HOME ,X"}
    )
    assert listed.runtime.env_allowlist == ["PATH", "HOME", "X"]


@pytest.mark.parametrize(
    ("text", "expected"),
    [
        ("[nonsense]\na = 1\n", "nonsense: unknown section"),
        ("orchestrator = 3\n", "orchestrator: expected a table"),
        ("[orchestrator]\nmax_agents = 3\n", "orchestrator.max_agents: unknown setting"),
        ("[orchestrator]\nmax_concurrent_agents = 0\n", "orchestrator.max_concurrent_agents:"),
        ('[orchestrator]\nmax_concurrent_agents = "five"\n', "Expected `int`"),
        ("[breaker]\nopen_timeout = -1\n", "breaker.open_timeout:"),
        ('[redis]\nappendfsync = "never"\n', "redis.appendfsync:"),
        ('[redis]\nnamespace = "a b"\n', "redis.namespace:"),
        ("[retry]\njitter = 2\n", "retry.jitter:"),
        ("[retry]\nbase_delay = 10\nmax_delay = 1\n", "retry.max_delay: must be at least"),
        ('[logging]\nlevel = "loud"\n', "logging.level:"),
        ("[runtime]\nenv_allowlist = [1]\n", "runtime.env_allowlist:"),
    ],
)
def test_each_invalid_field_is_reported_with_its_path(
    tmp_path: Path, text: str, expected: str
) -> None:
    path = write(tmp_path / "bad.toml", text)
    problems = validate_file(path)
    assert any(expected in p for p in problems), problems
    with pytest.raises(ConfigError) as caught:
        load_settings(path, environ={"FORGE_HOME": str(tmp_path)})
    assert expected in "\n".join(caught.value.problems)


def test_every_problem_is_reported_not_just_the_first(tmp_path: Path) -> None:
    path = write(
        tmp_path / "bad.toml",
        '[orchestrator]\nmax_concurrent_agents = 0\nbogus = 1\n[logging]\nlevel = "x"\n',
    )
    problems = validate_file(path)
    assert len(problems) == 3
    assert {p.split(":")[0] for p in problems} == {
        "orchestrator.max_concurrent_agents",
        "orchestrator.bogus",
        "logging.level",
    }


def test_invalid_environment_value_names_the_setting(tmp_path: Path) -> None:
    env = {"FORGE_HOME": str(tmp_path), "FORGE_BREAKER_FAILURE_THRESHOLD": "many"}
    with pytest.raises(ConfigError, match=r"breaker\.failure_threshold"):
        load_settings(environ=env)


@pytest.mark.parametrize(
    ("content", "expected"),
    [
        (b"[orchestrator\n", "not valid TOML"),
        (b"\xff\xfe[redis]\n", "not UTF-8"),
    ],
)
def test_unreadable_files_are_one_clear_error(
    tmp_path: Path, content: bytes, expected: str
) -> None:
    path = tmp_path / "broken.toml"
    path.write_bytes(content)
    with pytest.raises(ConfigError, match=expected):
        load_settings(path, environ={"FORGE_HOME": str(tmp_path)})


def test_missing_explicit_file_is_an_error(tmp_path: Path) -> None:
    with pytest.raises(ConfigError, match="file not found"):
        load_settings(tmp_path / "absent.toml", environ={"FORGE_HOME": str(tmp_path)})


def test_unknown_override_is_refused(tmp_path: Path) -> None:
    with pytest.raises(ConfigError, match="unknown setting"):
        load_settings(environ={"FORGE_HOME": str(tmp_path)}, overrides={"nope": 1})


def test_default_file_is_valid_and_holds_the_defaults(tmp_path: Path) -> None:
    path = write(tmp_path / "config.toml", default_config_text())
    assert validate_file(path) == []
    loaded = load_settings(path, environ={"FORGE_HOME": str(tmp_path)})
    assert loaded == Settings(home=str(tmp_path))
    assert "# Most agents alive at once." in path.read_text()


def test_secrets_are_collected_and_redacted_for_display(tmp_path: Path) -> None:
    env = {
        "FORGE_HOME": str(tmp_path),
        "FORGE_REDIS_URL": "redis://alice:url-canary-pw@localhost:6379/0",
        "FORGE_REDIS_PASSWORD": "field-canary-pw",
        "ANTHROPIC_API_KEY": "env-canary-key",
    }
    settings = load_settings(environ=env)
    found = secret_values(settings, env)
    assert {"url-canary-pw", "field-canary-pw", "env-canary-key"} <= set(found)
    shown = msgspec.json.encode(settings.redacted()).decode()
    assert "canary" not in shown
    assert "alice" in shown
