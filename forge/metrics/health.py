"""Health checks of the daemon: is it alive (`/healthz`), can it do its work (`/readyz`).

* alive: the daemon's own answer (its orchestrator and tail reader run, its heartbeat loop
  ticked lately), handed in as a callable;
* ready: the log answers a PING within a short timeout, and — when the claude runtime is
  available — the model API accepts a TCP connection (`ANTHROPIC_BASE_URL`, else
  api.anthropic.com:443). Only a connection is made: nothing is sent, no key in particular.
  The model API's answer is kept for `API_CACHE_SECONDS`.
"""

from __future__ import annotations

import socket
import threading
import time
from collections.abc import Callable
from urllib.parse import urlsplit

import redis

__all__ = ["API_CACHE_SECONDS", "DEFAULT_API_URL", "ApiProbe", "Check", "LogProbe"]

DEFAULT_API_URL = "https://api.anthropic.com"
API_CACHE_SECONDS = 10.0
PROBE_TIMEOUT = 1.0

Check = Callable[[], tuple[bool, str]]
"""A check: (passed, what was found)."""


class LogProbe:
    """PINGs the log through a client of its own with a short timeout (a stalled server makes
    the check fail in about `timeout` seconds, not the daemon's connect timeout)."""

    def __init__(self, client: redis.Redis, timeout: float = PROBE_TIMEOUT) -> None:
        pool = client.connection_pool
        kwargs = dict(pool.connection_kwargs)
        kwargs.update(socket_timeout=timeout, socket_connect_timeout=timeout)
        self.client = redis.Redis(
            connection_pool=redis.ConnectionPool(connection_class=pool.connection_class, **kwargs)
        )

    def __call__(self) -> tuple[bool, str]:
        try:
            self.client.ping()
        except (redis.RedisError, OSError) as e:
            self.client.connection_pool.disconnect()
            return False, f"unreachable: {type(e).__name__}"
        return True, "ok"


class ApiProbe:
    """Whether the model API accepts a TCP connection, answered from a cache for a while."""

    def __init__(
        self,
        url: str | None,
        needed: Callable[[], bool] = lambda: True,
        timeout: float = PROBE_TIMEOUT,
        ttl: float = API_CACHE_SECONDS,
    ) -> None:
        self.needed = needed  # whether the claude runtime runs (else the check passes)
        parts = urlsplit(url or DEFAULT_API_URL)
        self.host = parts.hostname or "api.anthropic.com"
        try:
            port = parts.port
        except ValueError:
            port = None
        self.port = port or (443 if parts.scheme == "https" else 80)
        self.timeout = timeout
        self.ttl = ttl
        self.lock = threading.Lock()
        self.cached: tuple[float, tuple[bool, str]] | None = None

    def __call__(self) -> tuple[bool, str]:
        if not self.needed():
            return True, "not used (no claude runtime)"
        with self.lock:
            now = time.monotonic()
            if self.cached is not None and now - self.cached[0] < self.ttl:
                return self.cached[1]
            try:
                with socket.create_connection((self.host, self.port), timeout=self.timeout):
                    result = (True, f"{self.host}:{self.port} reachable")
            except OSError as e:
                reason = e.strerror or type(e).__name__
                result = (False, f"{self.host}:{self.port} unreachable: {reason}")
            self.cached = (time.monotonic(), result)
            return result
