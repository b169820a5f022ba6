"""One typed, validated settings object.

Precedence, lowest first: built-in defaults, `$FORGE_HOME/config.toml` (or `--config FILE`),
`FORGE_<SECTION>_<FIELD>` environment variables, then command-line flags. This is the only
module that reads `os.environ`; everything else receives what it needs from here.
"""

from __future__ import annotations

import os
import tomllib
from collections.abc import Mapping
from pathlib import Path
from typing import Annotated, Any, Literal

import msgspec

from events.redact import is_secret_name, redact_value
from forge.errors import ConfigError
from forge.redis_url import redis_url_problems, url_passwords

__all__ = [
    "NAMESPACE_PATTERN",
    "PERMISSION_MODES",
    "BreakerSettings",
    "ClaudeSettings",
    "ContainerSettings",
    "IsolationSettings",
    "LoggingSettings",
    "MetricsSettings",
    "OrchestratorSettings",
    "RedisSettings",
    "RetrySettings",
    "RuntimeSettings",
    "Settings",
    "environment",
    "forge_home",
    "load_settings",
    "secret_values",
    "validate_file",
]

MAX_SECONDS = 30 * 24 * 3600.0  # a month: longer waits overflow the clocks they reach
MAX_CONFIG_BYTES = 1024 * 1024  # a longer settings file (or /dev/zero) is refused unread

MEMORY_PATTERN = r"^\s*\d{1,12}(\.\d{1,6})?\s*[kKmMgGtT]?(i?[bB])?\s*$"
"""A memory size as typed: 512M, 2G, 1.5g, 512MiB; a bare number is MiB (forge.isolation)."""
NAMESPACE_PATTERN = r"^[A-Za-z0-9_.-]{1,64}$"
"""What a log namespace may be: it becomes part of every Redis key."""

# Bounded above, so `inf` and `nan` (valid TOML floats) are refused too.
Positive = Annotated[float, msgspec.Meta(gt=0, le=MAX_SECONDS)]
NonNegative = Annotated[float, msgspec.Meta(ge=0, le=MAX_SECONDS)]
Count = Annotated[int, msgspec.Meta(ge=1, le=100_000)]

PERMISSION_MODES = ("default", "acceptEdits", "plan", "bypassPermissions", "dontAsk")
"""Claude Code's permission modes (`claude --permission-mode`)."""
PermissionMode = Literal["default", "acceptEdits", "plan", "bypassPermissions", "dontAsk"]
DEFAULT_ALLOWED_TOOLS = ("Bash",)
"""Allowed by default besides what `acceptEdits` lets through: the project's own commands
(tests, builds, git commit) that `acceptEdits` alone refuses."""
DEFAULT_DISALLOWED_TOOLS = ("Bash(git push *)", "Bash(sudo *)")
"""Refused by default even so: publishing the task's branch is for a person, and root is not
the agent's."""


class _Section(msgspec.Struct, kw_only=True, frozen=True, forbid_unknown_fields=True):
    pass


class RedisSettings(_Section, kw_only=True, frozen=True, forbid_unknown_fields=True):
    url: str | None = None
    username: str | None = None
    password: str | None = None
    namespace: Annotated[str, msgspec.Meta(pattern=NAMESPACE_PATTERN)] = "forge"
    appendfsync: Literal["always", "everysec"] = "everysec"
    connect_timeout: Positive = 5.0
    tls_ca: str | None = None
    tls_cert: str | None = None
    tls_key: str | None = None
    tls_check_hostname: bool = True
    sentinel_password: str | None = None
    failover_timeout: Positive = 20.0
    wait_replicas: Annotated[int, msgspec.Meta(ge=0, le=64)] = 0
    wait_timeout: Positive = 1.0


class OrchestratorSettings(_Section, kw_only=True, frozen=True, forbid_unknown_fields=True):
    max_concurrent_agents: Annotated[int, msgspec.Meta(ge=1, le=1000)] = 5
    health_check_interval: Positive = 30.0
    idle_agent_timeout: Positive = 300.0
    shutdown_grace: NonNegative = 30.0
    snapshot_every: Count = 1000
    fleet_budget_usd: Annotated[float, msgspec.Meta(ge=0, le=1e12)] | None = None


class NodeSettings(_Section, kw_only=True, frozen=True, forbid_unknown_fields=True):
    # a node's lease runs out this long after its last renewal (renewed every half second);
    # a node that could not renew for half of it stops its agents
    lease_ttl: Annotated[float, msgspec.Meta(ge=1, le=3600)] = 10.0
    labels: list[str] = msgspec.field(default_factory=list)  # empty: the node takes any task


class BreakerSettings(_Section, kw_only=True, frozen=True, forbid_unknown_fields=True):
    failure_threshold: Count = 5
    success_threshold: Count = 2
    open_timeout: Positive = 60.0


class RetrySettings(_Section, kw_only=True, frozen=True, forbid_unknown_fields=True):
    max_attempts: Count = 3
    base_delay: NonNegative = 1.0
    multiplier: Annotated[float, msgspec.Meta(ge=1, le=1000)] = 2.0
    max_delay: NonNegative = 300.0
    jitter: Annotated[float, msgspec.Meta(ge=0, le=1)] = 0.2


class RuntimeSettings(_Section, kw_only=True, frozen=True, forbid_unknown_fields=True):
    default: Literal["shell", "claude"] = "shell"
    claude_binary: str | None = None
    default_model: str = "sonnet"
    task_timeout: Positive = 3600.0
    env_allowlist: list[str] = msgspec.field(
        default_factory=lambda: ["PATH", "HOME", "LANG", "LC_ALL", "TERM", "TMPDIR", "USER"]
    )


class ClaudeSettings(_Section, kw_only=True, frozen=True, forbid_unknown_fields=True):
    approval_timeout: Positive = 600.0
    # The default permission policy of claude tasks (docs/claude.md, "Permissions"): edits and
    # the project's own commands in the task's worktree run without a person; no push, no sudo.
    permission_mode: PermissionMode = "acceptEdits"
    allowed_tools: list[str] = msgspec.field(default_factory=lambda: list(DEFAULT_ALLOWED_TOOLS))
    disallowed_tools: list[str] = msgspec.field(
        default_factory=lambda: list(DEFAULT_DISALLOWED_TOOLS)
    )
    add_dirs: list[str] = msgspec.field(default_factory=list)
    sandbox: bool = False  # this machine is disposable: bypassPermissions may run as root


class IsolationSettings(_Section, kw_only=True, frozen=True, forbid_unknown_fields=True):
    # defaults of the isolation of shell and claude tasks (docs/isolation.md), recorded at submit
    sandbox: bool = False
    network: Literal["on", "off", "api"] = "on"
    memory: Annotated[str, msgspec.Meta(pattern=MEMORY_PATTERN)] | None = None  # "512M", "2G"
    cpus: Annotated[float, msgspec.Meta(gt=0, le=1024)] | None = None
    pids: Annotated[int, msgspec.Meta(ge=1, le=4_194_304)] | None = None


class LoggingSettings(_Section, kw_only=True, frozen=True, forbid_unknown_fields=True):
    level: Literal["debug", "info", "warning", "error"] = "info"
    format: Literal["auto", "console", "json"] = "auto"


class MetricsSettings(_Section, kw_only=True, frozen=True, forbid_unknown_fields=True):
    port: Annotated[int, msgspec.Meta(ge=1, le=65535)] | None = None  # None: no port opened
    host: Annotated[str, msgspec.Meta(min_length=1, max_length=255)] = "127.0.0.1"


class ContainerSettings(_Section, kw_only=True, frozen=True, forbid_unknown_fields=True):
    engine: Literal["auto", "podman", "docker"] = "auto"
    image: Annotated[str, msgspec.Meta(min_length=1, max_length=4096)] | None = None
    run_args: list[str] = msgspec.field(default_factory=list)


class Settings(msgspec.Struct, kw_only=True, frozen=True):
    home: str
    redis: RedisSettings = msgspec.field(default_factory=RedisSettings)
    orchestrator: OrchestratorSettings = msgspec.field(default_factory=OrchestratorSettings)
    node: NodeSettings = msgspec.field(default_factory=NodeSettings)
    breaker: BreakerSettings = msgspec.field(default_factory=BreakerSettings)
    retry: RetrySettings = msgspec.field(default_factory=RetrySettings)
    runtime: RuntimeSettings = msgspec.field(default_factory=RuntimeSettings)
    logging: LoggingSettings = msgspec.field(default_factory=LoggingSettings)
    claude: ClaudeSettings = msgspec.field(default_factory=ClaudeSettings)
    isolation: IsolationSettings = msgspec.field(default_factory=IsolationSettings)
    metrics: MetricsSettings = msgspec.field(default_factory=MetricsSettings)
    container: ContainerSettings = msgspec.field(default_factory=ContainerSettings)

    @property
    def home_path(self) -> Path:
        return Path(self.home)

    def redacted(self) -> dict[str, Any]:
        """The settings as plain data with every secret masked, for display."""
        return dict(redact_value(msgspec.to_builtins(self)))


SECTIONS: dict[str, type[_Section]] = {
    "redis": RedisSettings,
    "orchestrator": OrchestratorSettings,
    "node": NodeSettings,
    "breaker": BreakerSettings,
    "retry": RetrySettings,
    "runtime": RuntimeSettings,
    "logging": LoggingSettings,
    "claude": ClaudeSettings,
    "isolation": IsolationSettings,
    "metrics": MetricsSettings,
    "container": ContainerSettings,
}

# Short names for the variables people type most; `FORGE_<SECTION>_<FIELD>` always works too.
ENV_ALIASES = {"FORGE_LOG_LEVEL": "logging.level", "FORGE_LOG_FORMAT": "logging.format"}


def environment() -> dict[str, str]:
    """A copy of the process environment (the one sanctioned read of `os.environ`)."""
    return dict(os.environ)


def forge_home(environ: Mapping[str, str] | None = None) -> Path:
    """`$FORGE_HOME`, or `~/.forge`."""
    env = os.environ if environ is None else environ
    return Path(env.get("FORGE_HOME") or Path.home() / ".forge").expanduser()


def secret_values(settings: Settings, environ: Mapping[str, str] | None = None) -> list[str]:
    """Every secret value Forge knows of, so the redactor can mask it anywhere."""
    env = os.environ if environ is None else environ
    found = [value for name, value in env.items() if is_secret_name(name) and value]
    if settings.redis.password:
        found.append(settings.redis.password)
    if settings.redis.sentinel_password:
        found.append(settings.redis.sentinel_password)
    if settings.redis.url:
        found += url_passwords(settings.redis.url)
    return found


def _read_toml(path: Path) -> dict[str, Any]:
    try:
        with path.open("rb") as f:
            data = f.read(MAX_CONFIG_BYTES + 1)
        text = data.decode("utf-8")
    except FileNotFoundError:
        raise ConfigError([f"file not found: {path}"]) from None
    except UnicodeDecodeError as e:
        raise ConfigError([f"not UTF-8 text (byte {e.start})"], str(path)) from None
    except OSError as e:
        raise ConfigError([f"cannot read {path}: {e.strerror}"]) from None
    if len(data) > MAX_CONFIG_BYTES:
        raise ConfigError([f"over the limit of {MAX_CONFIG_BYTES // 1024} KiB"], str(path))
    try:
        return tomllib.loads(text)
    except tomllib.TOMLDecodeError as e:
        raise ConfigError([f"not valid TOML: {e}"], str(path)) from None
    except RecursionError:
        raise ConfigError(["nested too deeply"], str(path)) from None


def _env_layer(environ: Mapping[str, str]) -> dict[str, str]:
    layer: dict[str, str] = {}
    for section, cls in SECTIONS.items():
        for field in msgspec.structs.fields(cls):
            name = f"FORGE_{section}_{field.name}".upper()
            if name in environ:
                layer[f"{section}.{field.name}"] = environ[name]
    for alias, path in ENV_ALIASES.items():
        if alias in environ:
            layer[path] = environ[alias]
    return layer


def _coerce_text(value: str, field_type: Any) -> Any:
    """Environment and flag values arrive as text; lists are comma-separated."""
    if "list[" in str(field_type):
        return [item.strip() for item in value.split(",") if item.strip()]
    if value == "" and "None" in str(field_type):
        return None
    return value


def _check(
    raw: Mapping[str, Any], later: Mapping[str, Any] | None = None
) -> tuple[dict[str, Any], list[str]]:
    """Validate every field on its own so that every problem is reported, not just the first.

    `raw` is the file's content; `later` maps dotted paths to values that override it, in
    order (environment, then flags). Text values there are parsed leniently ("5" is an int).
    """
    problems: list[str] = []
    merged: dict[str, dict[str, Any]] = {section: {} for section in SECTIONS}
    for key, value in raw.items():
        if key not in SECTIONS:
            problems.append(f"{_key(key)}: unknown section (expected one of {', '.join(SECTIONS)})")
        elif not isinstance(value, dict):
            problems.append(f"{key}: expected a table, got {type(value).__name__}")
        else:
            merged[key].update({name: (v, True) for name, v in value.items()})
    for path, value in (later or {}).items():
        section, name = path.split(".", 1)
        merged[section][name] = (value, not isinstance(value, str))

    built: dict[str, Any] = {}
    for section, cls in SECTIONS.items():
        fields = {f.name: f.type for f in msgspec.structs.fields(cls)}
        values: dict[str, Any] = {}
        for name, (value, strict) in merged[section].items():
            path = f"{section}.{name}"
            if name not in fields:
                problems.append(f"{section}.{_key(name)}: unknown setting")
                continue
            candidate = value if strict else _coerce_text(value, fields[name])
            try:
                values[name] = msgspec.convert(candidate, fields[name], strict=strict)
            except (msgspec.ValidationError, RecursionError) as e:
                shown = _shown(redact_value(value, name))
                reason = "nested too deeply" if isinstance(e, RecursionError) else str(e)
                problems.append(f"{path}: {reason} (got {shown})")
                continue
            if _has_nul(values[name]):
                problems.append(f"{path}: contains a NUL byte")
        built[section] = values
    problems.extend(_check_relations(built))
    return built, problems


def _key(name: str) -> str:
    """A key of the file as typed, or quoted when it holds anything but printable text."""
    return name if name.isprintable() and len(name) <= 64 else repr(name[:64])


def _has_nul(value: Any) -> bool:
    if isinstance(value, str):
        return "\0" in value
    return isinstance(value, list) and any(_has_nul(v) for v in value)


def _shown(value: Any) -> str:
    """A rejected value for a message: its repr, cut short (a value may be huge or deep)."""
    try:
        text = repr(value)
    except RecursionError:
        return "a deeply nested value"
    return text if len(text) <= 80 else text[:77] + "..."


def _check_relations(built: Mapping[str, Mapping[str, Any]]) -> list[str]:
    problems = redis_url_problems(built["redis"])
    if problems:
        return problems
    retry = {**msgspec.structs.asdict(RetrySettings()), **built["retry"]}
    if retry["max_delay"] < retry["base_delay"]:
        return [
            f"retry.max_delay: must be at least retry.base_delay "
            f"({retry['max_delay']} < {retry['base_delay']})"
        ]
    return []


def load_settings(
    config_file: str | Path | None = None,
    overrides: Mapping[str, Any] | None = None,
    environ: Mapping[str, str] | None = None,
) -> Settings:
    """Build the effective settings: defaults < file < FORGE_* environment < `overrides`.

    `overrides` maps dotted paths (`"orchestrator.max_concurrent_agents"`) to values typed by
    command-line flags; `None` values are ignored.
    """
    env = os.environ if environ is None else environ
    home = forge_home(env)
    explicit = config_file or env.get("FORGE_CONFIG")
    path = Path(explicit).expanduser() if explicit else home / "config.toml"
    raw = _read_toml(path) if explicit or path.exists() else {}

    later: dict[str, Any] = dict(_env_layer(env))
    for key, value in (overrides or {}).items():
        if value is None:
            continue
        if "." not in key or key.split(".", 1)[0] not in SECTIONS:
            raise ConfigError([f"{key}: unknown setting"])
        later[key] = value

    built, problems = _check(raw, later)
    if problems:
        raise ConfigError(problems, str(path) if raw else None)
    return msgspec.convert({"home": str(home), **built}, Settings)


def validate_file(path: str | Path) -> list[str]:
    """Every problem in a settings file (empty when it is valid), each prefixed by its path."""
    raw = _read_toml(Path(path))
    _, problems = _check(raw)
    return problems
