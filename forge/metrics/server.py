"""The daemon's HTTP endpoint: `/metrics` (Prometheus), `/healthz` and `/readyz`.

A small WSGI app served by the standard library's `wsgiref` in a thread (one thread per
request), on 127.0.0.1 unless `[metrics] host` says otherwise. `/metrics` is
prometheus-client's own WSGI app over a registry holding the `LogMetrics` reader; the two
health endpoints answer JSON, 200 when every check passes and 503 otherwise.
"""

from __future__ import annotations

import socketserver
import threading
from collections.abc import Iterable
from typing import Any
from wsgiref.simple_server import WSGIRequestHandler, WSGIServer, make_server

import msgspec
from prometheus_client import CollectorRegistry, make_wsgi_app

from events.errors import ForgeError
from forge.metrics.health import Check
from forge.metrics.reader import LogMetrics

__all__ = ["MetricsServer", "health_app"]


class _Server(socketserver.ThreadingMixIn, WSGIServer):
    daemon_threads = True
    allow_reuse_address = True


class _QuietHandler(WSGIRequestHandler):
    def log_message(self, format: str, *args: Any) -> None:
        """Requests are not logged (a scrape every few seconds would flood the daemon's log)."""


def _run(checks: dict[str, Check]) -> tuple[bool, dict[str, str]]:
    found: dict[str, str] = {}
    ok = True
    for name, check in checks.items():
        try:
            passed, detail = check()
        except Exception as e:  # a check that breaks is a failed check, not a crash
            passed, detail = False, f"{type(e).__name__}: {e}"
        ok = ok and passed
        found[name] = detail
    return ok, found


def health_app(metrics: LogMetrics, alive: dict[str, Check], ready: dict[str, Check]) -> Any:
    """The WSGI app: /metrics, /healthz (the `alive` checks), /readyz (the `ready` checks)."""
    registry = CollectorRegistry(auto_describe=False)
    registry.register(metrics)
    prometheus = make_wsgi_app(registry)

    def app(environ: dict[str, Any], start_response: Any) -> Iterable[bytes]:
        path = environ.get("PATH_INFO", "")
        if path == "/metrics":
            return list(prometheus(environ, start_response))
        if path in ("/healthz", "/readyz"):
            ok, found = _run(alive if path == "/healthz" else ready)
            body = msgspec.json.encode({"ok": ok, "checks": found}) + b"\n"
            status = "200 OK" if ok else "503 Service Unavailable"
            start_response(status, [("Content-Type", "application/json")])
            return [body]
        start_response("404 Not Found", [("Content-Type", "text/plain")])
        return [b"not found: try /metrics, /healthz or /readyz\n"]

    return app


class MetricsServer:
    """The endpoint, served from a background thread until `stop`."""

    def __init__(self, host: str, port: int, app: Any) -> None:
        try:
            self.server = make_server(host, port, app, _Server, _QuietHandler)
        except OSError as e:
            raise ForgeError(
                f"cannot serve metrics on {host}:{port}: {e.strerror or type(e).__name__}"
            ) from None
        self.thread = threading.Thread(
            target=self.server.serve_forever, name="forge-metrics", daemon=True
        )

    @property
    def port(self) -> int:
        return int(self.server.server_address[1])

    def start(self) -> MetricsServer:
        self.thread.start()
        return self

    def stop(self) -> None:
        self.server.shutdown()
        self.server.server_close()
        self.thread.join(timeout=5)
