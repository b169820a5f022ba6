"""`forge status`: the fleet at a glance."""

from __future__ import annotations

from typing import Any

import click

from forge.cli.app import App, echo_data, json_option, pass_app
from forge.connection import describe_target

__all__ = ["status"]


def _render(data: dict[str, Any]) -> str:
    return "\n".join(f"{key}: {value}" for key, value in data.items())


@click.command()
@json_option
@pass_app
def status(app: App, as_json: bool) -> None:
    """Show the fleet at a glance: Redis, agents, queue, breakers and spend."""
    client = app.redis
    info = client.info("server")
    data = {
        "redis": describe_target(app.settings),
        "server_version": info.get("valkey_version") or info.get("redis_version"),
        "namespace": app.settings.redis.namespace,
    }
    echo_data(data, as_json, _render)
