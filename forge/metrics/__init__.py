"""Metrics and health of a running daemon: Prometheus `/metrics` folded from the log, and the
`/healthz` and `/readyz` checks (docs/metrics.md)."""

from __future__ import annotations

import contextlib
import threading
from collections.abc import Callable
from typing import Any

import redis

from events.errors import ForgeError
from events.store import EventStore
from forge.metrics.health import ApiProbe, Check, LogProbe
from forge.metrics.reader import LogMetrics
from forge.metrics.server import MetricsServer, health_app
from forge.settings import Settings

__all__ = ["ApiProbe", "LogMetrics", "LogProbe", "MetricsServer", "health_app", "start_metrics"]


def start_metrics(
    settings: Settings,
    client: redis.Redis,
    alive: Check,
    heartbeat: Callable[[redis.Redis], Any],
    api_url: str | None,
    check_api: Callable[[], bool],
) -> MetricsServer:
    """Serve the daemon's metrics and health on `[metrics] host:port` (the port must be set).

    `alive` is the daemon's own liveness check; `heartbeat(client)` reads its heartbeat; the
    model API at `api_url` is part of readiness while `check_api()` (the claude runtime runs)."""
    assert settings.metrics.port is not None
    log = LogProbe(client)
    metrics = LogMetrics(
        EventStore(log.client, settings.redis.namespace),
        settings.redis.namespace,
        heartbeat=lambda: heartbeat(log.client),
    )
    ready: dict[str, Check] = {"log": log}
    ready["model_api"] = ApiProbe(api_url, check_api)
    app = health_app(metrics, {"orchestrator": alive}, ready)
    server = MetricsServer(settings.metrics.host, settings.metrics.port, app).start()
    threading.Thread(target=_warm, args=(metrics,), name="forge-metrics-warm", daemon=True).start()
    return server


def _warm(metrics: LogMetrics) -> None:
    """Fold the log once in the background, so that the first scrape of a long log is quick."""
    with contextlib.suppress(ForgeError):
        metrics.catch_up()
