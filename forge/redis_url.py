"""The forms `redis.url` may take, checked before anything connects.

* `redis://[user[:password]@]host[:port][/db]` and `unix://[user[:password]@]/path?db=N`: one
  server (parsed by redis-py's `from_url`);
* `rediss://…`: the same over TLS;
* `redis+sentinel://[user[:password]@]host1[:port1][,host2[:port2]…]/service[/db]`: the master
  of `service` as Redis Sentinel reports it (`rediss+sentinel://` over TLS, to the sentinels
  and the servers alike). The user and password are those of the servers; the sentinels'
  own password is `redis.sentinel_password`.

Every message here names the part that is wrong and never repeats a password.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass
from typing import Any
from urllib.parse import unquote, urlsplit

from events.redact import redact_url

__all__ = [
    "PLAIN_SCHEMES",
    "SENTINEL_PORT",
    "SENTINEL_SCHEMES",
    "RedisTarget",
    "parse_redis_url",
    "redis_url_problems",
    "url_passwords",
]

PLAIN_SCHEMES = ("redis", "rediss", "unix")
SENTINEL_SCHEMES = ("redis+sentinel", "rediss+sentinel")
SENTINEL_PORT = 26379


@dataclass(frozen=True, slots=True)
class RedisTarget:
    """What a `redis.url` points at."""

    scheme: str
    tls: bool
    sentinels: tuple[tuple[str, int], ...] = ()  # empty: not through Sentinel
    service: str = ""
    db: int = 0
    username: str | None = None
    password: str | None = None

    @property
    def through_sentinel(self) -> bool:
        return bool(self.sentinels)


def _scheme(url: str) -> str:
    scheme, sep, _ = url.partition("://")
    if not sep or not scheme:
        raise ValueError("not a URL (expected redis://, rediss://, unix:// or redis+sentinel://)")
    scheme = scheme.lower()
    if scheme not in PLAIN_SCHEMES + SENTINEL_SCHEMES:
        known = ", ".join(f"{s}://" for s in PLAIN_SCHEMES + SENTINEL_SCHEMES)
        raise ValueError(f"unsupported scheme {scheme}:// (expected one of {known})")
    return scheme


def _userinfo(netloc: str) -> tuple[str, str | None, str | None]:
    """(hosts part, user, password) of a network location, percent-decoded."""
    if "@" not in netloc:
        return netloc, None, None
    userinfo, hosts = netloc.rsplit("@", 1)
    user, sep, password = userinfo.partition(":")
    return hosts, unquote(user) or None, unquote(password) if sep else None


def _host(text: str) -> tuple[str, int]:
    if text.startswith("["):  # [IPv6]:port
        host, sep, rest = text[1:].partition("]")
        if not sep or (rest and not rest.startswith(":")):
            raise ValueError(f"sentinel address {text!r}: unbalanced brackets")
        port_text = rest[1:]
    else:
        host, _, port_text = text.partition(":")
    if not host:
        raise ValueError(f"sentinel address {text!r}: no host")
    if not port_text:
        return host, SENTINEL_PORT
    if not port_text.isdigit() or not 1 <= int(port_text) <= 65535:
        raise ValueError(f"sentinel address {text!r}: the port must be 1 to 65535")
    return host, int(port_text)


def _sentinel_target(scheme: str, rest: str) -> RedisTarget:
    if "?" in rest or "#" in rest:
        raise ValueError("a sentinel URL takes no ?query or #fragment (use the [redis] settings)")
    netloc, _, path = rest.partition("/")
    hosts, user, password = _userinfo(netloc)
    if not hosts:
        raise ValueError("no sentinel address (expected host:port[,host:port…]/service)")
    sentinels = tuple(_host(h) for h in hosts.split(","))
    service, _, db_text = path.partition("/")
    if not service:
        raise ValueError("no service name (expected …/service_name[/db] after the sentinels)")
    db_text = db_text.rstrip("/")
    if db_text and not (db_text.isdigit() and int(db_text) < 1 << 31):
        raise ValueError(f"database {db_text!r}: expected a number")
    return RedisTarget(
        scheme=scheme,
        tls=scheme.startswith("rediss"),
        sentinels=sentinels,
        service=unquote(service),
        db=int(db_text or 0),
        username=user,
        password=password,
    )


def parse_redis_url(url: str) -> RedisTarget:
    """What `url` points at; ValueError (with no password in its message) when it is not a
    URL Forge can connect to."""
    scheme = _scheme(url)
    rest = url.split("://", 1)[1]
    if scheme in SENTINEL_SCHEMES:
        return _sentinel_target(scheme, rest)
    try:
        parts = urlsplit(url)
        port = parts.port if scheme != "unix" else None
    except ValueError as e:
        raise ValueError(f"not a valid URL: {e}") from None
    if scheme != "unix" and not parts.hostname:
        raise ValueError("no host (expected redis://host:port/db)")
    if scheme == "unix" and not parts.path:
        raise ValueError("no socket path (expected unix:///path/to/socket)")
    del port  # parsed only to refuse a bad one here, with this message
    return RedisTarget(
        scheme=scheme,
        tls=scheme == "rediss",
        username=unquote(parts.username) if parts.username else None,
        password=unquote(parts.password) if parts.password else None,
    )


def url_passwords(url: str) -> list[str]:
    """The password in `url`, as typed and percent-decoded (none, one or both), so that either
    form can be masked wherever it appears."""
    rest = url.partition("://")[2]
    if "@" not in rest:
        return []
    _, sep, raw = rest.rsplit("@", 1)[0].partition(":")
    return [p for p in dict.fromkeys((raw, unquote(raw))) if p] if sep else []


def redis_url_problems(redis: Mapping[str, Any]) -> list[str]:
    """What is wrong with the `[redis]` settings given (`url` and the TLS files): the URL's
    form, and TLS files set where no TLS is used (the files are read when connecting)."""
    url = redis.get("url")
    if not url:
        return []
    try:
        target = parse_redis_url(url)
    except ValueError as e:
        shown = redact_url(url)
        shown = shown if len(shown) <= 80 else shown[:77] + "..."
        return [f"redis.url: {e} (got {shown!r})"]
    tls_set = [name for name in ("tls_ca", "tls_cert", "tls_key") if redis.get(name)]
    if tls_set and not target.tls:
        return [f"redis.{tls_set[0]}: set, but redis.url is not rediss:// (TLS)"]
    if bool(redis.get("tls_cert")) != bool(redis.get("tls_key")):
        return ["redis.tls_cert and redis.tls_key: set both or neither"]
    return []
