"""Connecting to Redis: the configured URL, or the embedded server started on demand.

A configured `redis.url` reaches one server (`redis://`, `unix://`, `rediss://` with TLS) or the
master of a Redis Sentinel service (`redis+sentinel://`), through redis-py's own TLS and
Sentinel support (see `forge.redis_url` for the forms and docs/redis.md for what each needs).

With `redis.wait_replicas` set, every run of the log's append script is followed by `WAIT` on
the same connection; when fewer replicas than asked confirm it in `redis.wait_timeout` (or the
server refuses it with `NOREPLICAS`), the call fails with `NotReplicated`, so that nothing Forge
reports as appended can be lost by a failover that promotes a replica.
"""

from __future__ import annotations

import hashlib
import math
from pathlib import Path
from typing import Any, cast

import redis
from redis.backoff import ExponentialBackoff, NoBackoff
from redis.connection import SSLConnection
from redis.retry import Retry
from redis.sentinel import Sentinel, SentinelManagedConnection

from events.errors import StoreUnavailable
from events.redact import redact, redact_url
from events.store import load_script
from forge.errors import ConfigError
from forge.redis_url import RedisTarget, parse_redis_url
from forge.server import EmbeddedServer
from forge.settings import RedisSettings, Settings

__all__ = ["NotReplicated", "ReplicatedRedis", "connect", "describe_target"]

_APPEND_SCRIPT_SHA = hashlib.sha1(
    load_script("append.lua").encode(),
    usedforsecurity=False,  # the name Redis gives the script
).hexdigest()
"""The log's append script (events/lua/append.lua), by the hash it is run by: every append to
the log goes through it. Nothing else waits: the index, snapshots, heartbeats and leases are
derived from the log or renewed."""

_BACKOFF_BASE, _BACKOFF_CAP = 0.05, 0.5
_REFUSED_IN_SCRIPT = "can't run this command"  # a command a script calls, refused by ACL
_ACL_HINT = "the Redis user lacks a privilege Forge needs: docs/redis.md lists them"


class NotReplicated(redis.ConnectionError):
    """Raised when fewer replicas than `redis.wait_replicas` confirm an append in time: it may
    be lost on a failover, so it is not acknowledged (it may still be in the log). A
    ConnectionError, so that Forge waits it out as an outage of the log."""


class _Unconfirmed(redis.ResponseError):
    """NotReplicated inside redis-py's retry loop, which would send a ConnectionError's
    command again (appending twice). Also a server's own refusal for want of replicas
    (`min-replicas-to-write`)."""


def _appends_to_the_log(args: tuple[Any, ...]) -> bool:
    name = str(args[0]).upper() if args else ""
    return name == "EVALSHA" and len(args) > 1 and str(args[1]) == _APPEND_SCRIPT_SHA


class ReplicatedRedis(redis.Redis):
    """A client that, when `wait_replicas` is set, WAITs for that many replicas after each
    append to the log, on the connection that appended."""

    wait_replicas: int = 0
    wait_timeout_ms: int = 1000

    def execute_command(self, *args: Any, **options: Any) -> Any:
        try:
            return super().execute_command(*args, **options)  # type: ignore[no-untyped-call]
        except _Unconfirmed as e:
            raise NotReplicated(str(e)) from None

    def _send_command_parse_response(
        self, conn: Any, command_name: Any, *args: Any, **options: Any
    ) -> Any:
        send = super()._send_command_parse_response
        try:
            reply = send(conn, command_name, *args, **options)  # type: ignore[no-untyped-call]
        except redis.ResponseError as e:
            if str(e).startswith("NOREPLICAS"):  # min-replicas-to-write: nothing was written
                raise _Unconfirmed(str(e)) from None
            refused = isinstance(e, redis.exceptions.NoPermissionError)
            if not (refused or _REFUSED_IN_SCRIPT in str(e)):
                raise
            raise redis.exceptions.NoPermissionError(f"{e} ({_ACL_HINT})") from None
        if self.wait_replicas and _appends_to_the_log(args):
            try:
                conn.send_command("WAIT", self.wait_replicas, self.wait_timeout_ms)
                # the socket timeout may be shorter than the WAIT
                acked = int(conn.read_response(timeout=self.wait_timeout_ms / 1000 + 1.0))
            except (redis.ConnectionError, redis.TimeoutError) as e:
                raise _Unconfirmed(f"appended, but WAIT failed: {e}") from e
            if acked < self.wait_replicas:
                # this server may have been demoted behind our back (its replicas follow a new
                # master): reconnecting asks Sentinel again where the master is
                conn.disconnect()
                raise _Unconfirmed(
                    f"appended, confirmed by {acked} of {self.wait_replicas} replicas in "
                    f"{self.wait_timeout_ms} ms: not acknowledged (it may be lost on failover)"
                )
        return reply


class _SentinelConnection(SentinelManagedConnection):
    """Asks Sentinel where the master is on every (re)connect. redis-py's own does so only when
    its pool connects it, not when a command's retry reconnects it, which then goes back to
    the demoted master until the retries run out (redis/redis-py#3874)."""

    def connect_check_health(
        self, check_health: bool = True, retry_socket_connect: bool = True
    ) -> None:
        if self._sock is None and self.connection_pool.is_master:
            self.host, self.port = self.connection_pool.get_master_address()
        super().connect_check_health(check_health, retry_socket_connect)


class _SentinelSSLConnection(_SentinelConnection, SSLConnection):
    pass


def describe_target(settings: Settings) -> str:
    """Where Forge's Redis is, with any password masked (for messages and `status`)."""
    if settings.redis.url:
        return redact_url(settings.redis.url)
    return EmbeddedServer(settings.home_path).url


def _reason(error: BaseException) -> str:
    text = str(error).strip() or type(error).__name__
    return redact(text.splitlines()[0])


def _pem_file(name: str, value: str | None) -> str | None:
    if value is None:
        return None
    path = Path(value).expanduser()
    try:
        with path.open("rb") as f:
            head = f.read(4096)
    except OSError as e:
        raise ConfigError([f"redis.{name}: cannot read {path}: {e.strerror}"]) from None
    if b"-----BEGIN " not in head:
        raise ConfigError([f"redis.{name}: {path} is not a PEM file"])
    return str(path)


def _tls_options(config: RedisSettings) -> dict[str, Any]:
    return {
        "ssl_ca_certs": _pem_file("tls_ca", config.tls_ca),
        "ssl_certfile": _pem_file("tls_cert", config.tls_cert),
        "ssl_keyfile": _pem_file("tls_key", config.tls_key),
        "ssl_check_hostname": config.tls_check_hostname,
        "ssl_cert_reqs": "required",
    }


def _failover_retry(config: RedisSettings) -> Retry:
    """Retries (with backoff up to half a second) that span `failover_timeout`: a command
    that meets a master going away waits for Sentinel to name the next one."""
    ramp = sum(min(_BACKOFF_CAP, _BACKOFF_BASE * 2**i) for i in range(4))
    retries = 4 + math.ceil(max(0.0, config.failover_timeout - ramp) / _BACKOFF_CAP)
    return Retry(ExponentialBackoff(cap=_BACKOFF_CAP, base=_BACKOFF_BASE), retries)


def _sentinel_failure(sentinel: Sentinel, service: str) -> str:
    """Why no master was found, in one short line (redis-py's message holds client reprs)."""
    reasons = []
    for node in sentinel.sentinels:
        try:
            node.ping()
        except (redis.RedisError, OSError) as e:
            reasons.append(_reason(e))
    if len(reasons) == len(sentinel.sentinels):
        return "no sentinel answers: " + "; ".join(reasons)
    return f"no sentinel knows a master of service {service!r} that is up"


def _sentinel_client(config: RedisSettings, target: RedisTarget, options: dict[str, Any]) -> Any:
    timeouts = {k: v for k, v in options.items() if k.startswith("socket_")}
    tls = {k: v for k, v in options.items() if k.startswith("ssl_")}
    if target.tls:
        tls["ssl"] = True  # the sentinels too
    sentinel = Sentinel(  # type: ignore[no-untyped-call]  # redis.sentinel is untyped
        list(target.sentinels),
        # no retries of its own: a sentinel that does not answer is skipped for the next one
        sentinel_kwargs={
            **timeouts,
            **tls,
            "password": config.sentinel_password,
            "retry": Retry(NoBackoff(), 0),
        },
    )
    try:
        sentinel.discover_master(target.service)  # type: ignore[no-untyped-call]  # once: fail fast
    except (redis.RedisError, OSError):
        reason = _sentinel_failure(sentinel, target.service)
        sentinel.close()
        raise StoreUnavailable(
            f"cannot reach Redis at {redact_url(config.url or '')}: {reason}"
        ) from None
    return sentinel.master_for(  # type: ignore[no-untyped-call]
        target.service,
        redis_class=ReplicatedRedis,
        connection_class=_SentinelSSLConnection if target.tls else _SentinelConnection,
        db=target.db,
        retry=_failover_retry(config),
        **options,
    )


def _external_client(config: RedisSettings) -> ReplicatedRedis:
    url = config.url or ""
    try:
        target = parse_redis_url(url)
    except ValueError as e:
        raise ConfigError([f"redis.url: {e}"]) from None
    timeout = config.connect_timeout
    options: dict[str, Any] = {"socket_timeout": timeout, "socket_connect_timeout": timeout}
    if target.tls:
        options.update(_tls_options(config))
    if target.through_sentinel:
        options["username"] = target.username or config.username
        options["password"] = target.password or config.password
        client: ReplicatedRedis = _sentinel_client(config, target, options)
    else:
        options["username"] = config.username
        options["password"] = config.password  # the URL's own user and password win
        try:
            client = cast(ReplicatedRedis, ReplicatedRedis.from_url(url, **options))
        except ValueError as e:
            raise ConfigError([f"redis.url: {_reason(e)}"]) from None
    client.wait_replicas = config.wait_replicas
    client.wait_timeout_ms = max(1, round(config.wait_timeout * 1000))
    return client


def connect(settings: Settings, *, start_embedded: bool = True) -> redis.Redis:
    """A connected client, checked with PING.

    With `redis.url` set, that server (or Sentinel service) is used and nothing is started.
    Otherwise the embedded server is started if it does not run yet (unless `start_embedded`
    is false).
    """
    if settings.redis.url:
        client: redis.Redis = _external_client(settings.redis)
    else:
        server = EmbeddedServer(settings.home_path, settings.redis.appendfsync)
        if start_embedded:
            server.ensure_running(settings.redis.connect_timeout)  # a live, silent one: fail
        client = server.client(settings.redis.connect_timeout)
    try:
        client.ping()
    except (redis.RedisError, OSError) as e:
        client.close()
        raise StoreUnavailable(
            f"cannot reach Redis at {describe_target(settings)}: {_reason(e)}"
        ) from None
    return client
