"""What every command shares: lazily loaded settings, the Redis connection, and output helpers."""

from __future__ import annotations

import sys
from collections.abc import Callable
from pathlib import Path
from typing import Any, TypeVar

import click
import msgspec
import redis

from events.redact import redact, redact_value, register_secrets
from events.store import EventStore
from forge.connection import connect
from forge.log import configure_logging
from forge.settings import Settings, load_settings, secret_values

__all__ = ["App", "echo_data", "json_option", "pass_app"]

F = TypeVar("F", bound=Callable[..., Any])


class App:
    """Per-invocation state: flags from the root command, settings and a client made on demand."""

    def __init__(self, config_file: Path | None, overrides: dict[str, Any]) -> None:
        self.config_file = config_file
        self.overrides = overrides
        self._settings: Settings | None = None
        self._redis: redis.Redis | None = None
        self._store: EventStore | None = None

    @property
    def settings(self) -> Settings:
        if self._settings is None:
            settings = load_settings(self.config_file, self.overrides)
            register_secrets(secret_values(settings))
            configure_logging(settings.logging.level, settings.logging.format)
            self._settings = settings
        return self._settings

    @property
    def debug(self) -> bool:
        """Whether debug logging was asked for (and configured): then an unexpected error's
        traceback is logged. False while the settings are not loaded, when logging is not
        configured and a traceback would reach stderr unfiltered."""
        return self._settings is not None and self._settings.logging.level == "debug"

    @property
    def redis(self) -> redis.Redis:
        if self._redis is None:
            self._redis = connect(self.settings)
        return self._redis

    @property
    def store(self) -> EventStore:
        """The event log of the configured namespace."""
        if self._store is None:
            self._store = EventStore(self.redis, self.settings.redis.namespace)
        return self._store

    def close(self) -> None:
        if self._redis is not None:
            self._redis.close()
            self._redis = None
            self._store = None


pass_app = click.make_pass_decorator(App)


def json_option(func: F) -> F:
    """Add `--json`: print machine-readable output instead of the human view."""
    return click.option(
        "--json", "as_json", is_flag=True, help="Print machine-readable JSON instead."
    )(func)


def echo_data(data: Any, as_json: bool, human: Callable[[Any], str]) -> None:
    """Print `data` as JSON (secrets masked) or through its human renderer."""
    if as_json:
        plain = redact_value(msgspec.to_builtins(data, enc_hook=str))
        sys.stdout.write(msgspec.json.encode(plain).decode() + "\n")
    else:
        click.echo(redact(human(data)))
