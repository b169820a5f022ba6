"""`forge daemon start|stop|status|logs`."""

from __future__ import annotations

import os
import signal
import sys
import threading
import time
from typing import Any, NoReturn

import click

from events import types as t
from forge.cli.app import App, echo_data, json_option, pass_app
from forge.cli.daemon_log_view import render_log_line
from forge.cli.render import DaemonInfo, daemon_info, duration, fleet_state, is_tty, stamp
from forge.cli.web_cmd import background_web, dashboard_beside
from forge.connection import connect
from forge.daemon import Daemon
from forge.daemon_process import DaemonFiles, python_argv, spawn_background, wait_gone
from forge.errors import DaemonError
from forge.log import get_logger
from forge.settings import environment

__all__ = ["daemon"]


@click.group()
def daemon() -> None:
    """Start, stop and inspect the background orchestrator daemon."""


@daemon.command("start")
@click.option("--foreground", is_flag=True, help="Run in this process (logs to stderr).")
@click.option(
    "--web",
    "web_port",
    type=click.IntRange(1, 65535),
    help="Also serve the dashboard on 127.0.0.1:PORT (see `forge web`); its address, token "
    "included, is printed.",
)
@click.option(
    "--metrics-port",
    type=click.IntRange(1, 65535),
    help="Serve /metrics, /healthz and /readyz on this port (default: metrics.port, unset).",
)
@pass_app
def start_cmd(app: App, foreground: bool, metrics_port: int | None, web_port: int | None) -> None:
    """Start the daemon: detached, with its pid file and log under FORGE_HOME."""
    if metrics_port is not None:
        app.overrides["metrics.port"] = metrics_port
    files = DaemonFiles(app.settings.home_path)
    running, stale = files.running()
    if running is not None:
        raise DaemonError(f"a daemon is already running (pid {running.pid})")
    if stale is not None:
        click.echo(f"removed the stale pid file of daemon pid {stale.pid}", err=True)
    if foreground:
        settings = app.settings
        with dashboard_beside(app, web_port):
            code = Daemon(settings, app.redis, connect=lambda: connect(settings)).run()
        exit_now(code)
    app.redis  # noqa: B018 - start the embedded server here, where its errors can be shown
    args = ["--config", str(app.config_file)] if app.config_file else []
    port = app.settings.metrics.port
    extra = ["--metrics-port", str(port)] if port is not None else []
    web_args, web_env, address = background_web(web_port)
    record = spawn_background(
        files,
        python_argv(*args, "daemon", "start", "--foreground", *extra, *web_args),
        environment() | web_env,
    )
    click.echo(f"daemon started (pid {record.pid}, node {record.node_id}); log: {files.logfile}")
    if address is not None:
        click.echo(address)
    if port is not None:
        click.echo(f"metrics: http://{app.settings.metrics.host}:{port}/metrics")


def exit_now(code: int) -> NoReturn:
    """End the daemon's process with `code`. Normally by raising click's Exit; if a stray
    non-daemon thread is still alive (it would keep the process up with nothing running --
    a zombie daemon), by `os._exit` after saying so."""
    lingering = [
        thread.name
        for thread in threading.enumerate()
        if thread is not threading.main_thread() and not thread.daemon and thread.is_alive()
    ]
    if lingering:
        get_logger("forge.daemon").warning("threads still alive at exit", threads=lingering)
        sys.stdout.flush()
        sys.stderr.flush()
        os._exit(code)
    raise click.exceptions.Exit(code)


@daemon.command("stop")
@click.option("--force", is_flag=True, help="Stop running tasks at once; SIGKILL if it lingers.")
@click.option("--timeout", type=click.FloatRange(0), help="Seconds to wait (default: grace + 30).")
@click.option("--node", "node", metavar="ID", help="Stop that node of the namespace, not this one.")
@click.option("--all", "every", is_flag=True, help="Stop every node of the namespace.")
@pass_app
def stop_cmd(app: App, force: bool, timeout: float | None, node: str | None, every: bool) -> None:
    """Ask this machine's daemon (or another node, or all) to stop, through the log, and wait
    for this machine's process to exit."""
    if node is not None and every:
        raise click.UsageError("--node and --all exclude each other")
    info = daemon_info(app)
    local = info.local
    state = fleet_state(app)
    running = {n.node_id for n in state.nodes.values() if n.running}
    if not info.running and not running:
        raise DaemonError("no daemon is running")
    if every:
        target: str | None = None
    else:
        target = node or (local.node_id if local else None)
        if target is None:
            raise DaemonError(
                "no daemon runs on this machine (stop another node with --node ID, or --all)"
            )
        if target != (local.node_id if local else None) and target not in running:
            raise DaemonError(
                f"no running node {target!r} in namespace {app.settings.redis.namespace!r}"
            )
    app.store.append(t.DaemonStopRequested(at=time.time(), force=force, node_id=target))
    if local is None or target not in (None, local.node_id):
        click.echo(f"stop requested ({'every node' if target is None else 'node ' + target})")
        return
    wait = timeout if timeout is not None else app.settings.orchestrator.shutdown_grace + 30
    if force:
        wait = min(wait, 15.0)
    if wait_gone(local.pid, local.create_time, wait):
        click.echo(f"daemon stopped (pid {local.pid}, node {local.node_id})")
        return
    if not force:
        raise DaemonError(
            f"the daemon (pid {local.pid}) did not stop within {wait:.0f} s; try --force"
        )
    os.kill(local.pid, signal.SIGKILL)
    wait_gone(local.pid, local.create_time, 10)
    DaemonFiles(app.settings.home_path).remove(local)
    click.echo(f"daemon killed (pid {local.pid}); a restart recovers its tasks")


def _status_data(app: App, info: DaemonInfo) -> dict[str, Any]:
    state = fleet_state(app)
    beat = info.heartbeat
    local = info.local
    agents: dict[str, int] = {}
    for a in state.agents.values():
        if a.status not in ("terminated", "crashed"):
            agents[a.status] = agents.get(a.status, 0) + 1
    return {
        "running": info.running,
        "pid": local.pid if local else (beat.pid if beat else None),
        "since": local.started_at if local else (beat.started_at if beat else None),
        "node_id": local.node_id if local else (beat.node_id if beat else state.daemon_node),
        "host": beat.host if beat else None,
        "epoch": state.daemon_epoch,
        "namespace": app.settings.redis.namespace,
        "agents": agents,
        "queued": {str(p): len(q) for p, q in state.queues.items() if q},
        "tasks": state.counts(),
        "log_position": state.position,
        "log_file": str(DaemonFiles(app.settings.home_path).logfile),
        "stale_pid": info.stale_pid,
    }


def _render(data: dict[str, Any]) -> str:
    if data["running"]:
        since = data["since"]
        uptime = duration(time.time() - since) if since else "?"
        head = f"daemon: running (pid {data['pid']}, since {stamp(since)}, up {uptime})"
    else:
        head = "daemon: not running"
        if data["stale_pid"]:
            head += f" (removed the stale pid file of pid {data['stale_pid']})"
    queued = ", ".join(f"p{p}: {n}" for p, n in data["queued"].items()) or "empty"
    agents = ", ".join(f"{n} {s}" for s, n in data["agents"].items()) or "none"
    tasks = ", ".join(f"{n} {s}" for s, n in sorted(data["tasks"].items())) or "none"
    return "\n".join(
        [
            head,
            f"node: {data['node_id'] or '-'}   epoch: {data['epoch']}   "
            f"namespace: {data['namespace']}",
            f"agents: {agents}",
            f"queue: {queued}",
            f"tasks: {tasks}",
            f"log: {data['log_file']}",
        ]
    )


@daemon.command("status")
@json_option
@pass_app
def status_cmd(app: App, as_json: bool) -> None:
    """Whether the daemon runs, since when, its node and epoch, agents and queue.

    Exits 1 when no daemon runs."""
    info = daemon_info(app)
    echo_data(_status_data(app, info), as_json, _render)
    if not info.running:
        raise click.exceptions.Exit(1)


@daemon.command("logs")
@click.option("--follow", "-f", is_flag=True, help="Keep printing new lines (Ctrl-C ends).")
@click.option("--lines", "-n", type=click.IntRange(0), default=50, show_default=True)
@click.option("--raw", "--json", "raw", is_flag=True, help="The JSON lines as written.")
@click.option("--console", is_flag=True, help="Console lines even when stdout is not a terminal.")
@pass_app
def logs_cmd(app: App, follow: bool, lines: int, raw: bool, console: bool) -> None:
    """Print the daemon's log: console lines on a terminal, its JSON lines otherwise."""
    if raw and console:
        raise click.UsageError("give --raw or --console, not both")
    path = DaemonFiles(app.settings.home_path).logfile
    if not path.exists():
        raise DaemonError(f"no daemon log yet at {path}")
    tty = is_tty()
    pretty = console or (tty and not raw)

    def show(line: str) -> None:
        for out in render_log_line(line, colour=tty) if pretty else [line]:
            click.echo(out)

    with open(path, "rb") as f:
        tail = f.read().decode("utf-8", "replace").splitlines()[-lines:] if lines else []
        for line in tail:
            show(line)
        if not follow:
            return
        pending = b""
        try:
            while True:
                chunk = f.read()
                if not chunk:
                    time.sleep(0.2)
                    continue
                *complete, pending = (pending + chunk).split(b"\n")
                for raw_line in complete:
                    show(raw_line.decode("utf-8", "replace"))
        except KeyboardInterrupt:
            return
