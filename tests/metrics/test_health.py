"""The health endpoints on their own: the model API check against the suite's mock API (a
connection only: no request, so no key, ever reaches it), the log check against the session's
server, and how /healthz and /readyz answer."""

from __future__ import annotations

import socket
from collections.abc import Iterator

import pytest
import redis

from events.store import EventStore
from forge.metrics import ApiProbe, LogMetrics, LogProbe, MetricsServer, health_app
from tests.metrics.conftest import free_port, health, samples
from tests.mock_anthropic.server import MockAnthropic


def closed_url() -> str:
    return f"http://127.0.0.1:{free_port()}"  # nothing listens there


@pytest.fixture
def serve(redis_client: redis.Redis) -> Iterator[object]:
    servers: list[MetricsServer] = []

    def start(api: ApiProbe, alive: bool = True) -> int:
        metrics = LogMetrics(EventStore(redis_client, "h"), "h")
        app = health_app(
            metrics,
            {"orchestrator": lambda: (alive, "running" if alive else "dead")},
            {"log": LogProbe(redis_client), "model_api": api},
        )
        server = MetricsServer("127.0.0.1", 0, app).start()
        servers.append(server)
        return server.port

    yield start
    for server in servers:
        server.stop()


def test_the_model_api_is_reached_without_a_request(serve: object, mock: MockAnthropic) -> None:
    port = serve(ApiProbe(mock.url))  # type: ignore[operator]
    code, body = health(port, "/readyz")
    host = mock.url.removeprefix("http://")
    assert (code, body) == (
        200,
        {"ok": True, "checks": {"log": "ok", "model_api": f"{host} reachable"}},
    )
    assert mock.requests == []  # a TCP connection only: nothing sent, no key


def test_an_unreachable_model_api_makes_it_unready(serve: object) -> None:
    url = closed_url()
    port = serve(ApiProbe(url))  # type: ignore[operator]
    code, body = health(port, "/readyz")
    assert code == 503
    assert body["ok"] is False
    assert body["checks"]["model_api"].startswith(f"{url.removeprefix('http://')} unreachable")
    assert body["checks"]["log"] == "ok"


def test_without_the_claude_runtime_the_model_api_is_not_checked(serve: object) -> None:
    port = serve(ApiProbe(closed_url(), needed=lambda: False))  # type: ignore[operator]
    code, body = health(port, "/readyz")
    assert code == 200
    assert body["checks"]["model_api"] == "not used (no claude runtime)"


def test_the_answer_is_cached() -> None:
    with socket.socket() as listener:
        listener.bind(("127.0.0.1", 0))
        listener.listen()
        url = f"http://127.0.0.1:{listener.getsockname()[1]}"
        probe = ApiProbe(url, ttl=3600)
        assert probe()[0] is True
    assert probe()[0] is True  # closed since, but the cached answer stands
    assert ApiProbe(url, ttl=0)()[0] is False


def test_liveness_is_the_daemons_answer(serve: object) -> None:
    port = serve(ApiProbe(None, needed=lambda: False), alive=False)  # type: ignore[operator]
    assert health(port, "/healthz") == (503, {"ok": False, "checks": {"orchestrator": "dead"}})
    assert samples(port)[("forge_log_reachable", ())] == 1


def test_the_dashboard_uses_only_metrics_that_exist(redis_client: redis.Redis) -> None:
    import json
    import re
    from pathlib import Path

    from events import types as t

    store = EventStore(redis_client, "dash")
    store.append(t.BreakerOpened(at=1.0, name="model-api", until=2.0, reason="test"))
    metrics = LogMetrics(store, "dash", heartbeat=lambda: None)
    served = set()
    for family in metrics.collect():
        kinds = {"counter": ("_total",), "histogram": ("_bucket", "_count", "_sum")}
        served |= {family.name + suffix for suffix in kinds.get(family.type, ("",))}
    path = Path(__file__).parents[2] / "docs" / "grafana" / "forge.json"
    dashboard = json.loads(path.read_text())
    used = {
        name
        for panel in dashboard["panels"]
        for target in panel["targets"]
        for name in re.findall(r"forge_[a-z_]+", target["expr"])
    }
    missing = used - served - {"forge_daemon_uptime_seconds", "forge_daemon_behind_events"}
    assert used
    assert missing == set()
