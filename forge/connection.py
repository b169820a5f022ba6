"""Connecting to Redis: the configured URL, or the embedded server started on demand."""

from __future__ import annotations

import redis

from events.errors import StoreUnavailable
from events.redact import redact, redact_url
from forge.server import EmbeddedServer
from forge.settings import Settings

__all__ = ["connect", "describe_target"]


def describe_target(settings: Settings) -> str:
    """Where Forge's Redis is, with any password masked (for messages and `status`)."""
    if settings.redis.url:
        return redact_url(settings.redis.url)
    return EmbeddedServer(settings.home_path).url


def _reason(error: BaseException) -> str:
    text = str(error).strip() or type(error).__name__
    return redact(text.splitlines()[0])


def connect(settings: Settings, *, start_embedded: bool = True) -> redis.Redis:
    """A connected client, checked with PING.

    With `redis.url` set, that server is used and nothing is started. Otherwise the embedded
    server is started if it does not run yet (unless `start_embedded` is false).
    """
    timeout = settings.redis.connect_timeout
    if settings.redis.url:
        options: dict[str, object] = {"socket_timeout": timeout, "socket_connect_timeout": timeout}
        if settings.redis.password:
            options["password"] = settings.redis.password
        try:
            client: redis.Redis = redis.Redis.from_url(settings.redis.url, **options)
        except ValueError as e:
            raise StoreUnavailable(
                f"cannot reach Redis at {redact_url(settings.redis.url)}: {_reason(e)}"
            ) from None
    else:
        server = EmbeddedServer(settings.home_path, settings.redis.appendfsync)
        if start_embedded:
            server.ensure_running(timeout)  # a live server that stays silent: fail, no twin
        client = server.client(timeout)
    try:
        client.ping()
    except (redis.RedisError, OSError) as e:
        client.close()
        raise StoreUnavailable(
            f"cannot reach Redis at {describe_target(settings)}: {_reason(e)}"
        ) from None
    return client
