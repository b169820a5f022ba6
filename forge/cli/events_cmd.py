"""`forge events tail|replay|export|verify|stats`: reading and checking the log."""

from __future__ import annotations

import datetime as dt
import re
import sys
from pathlib import Path
from typing import IO, Any

import click
import msgspec

from events.errors import ForgeError
from events.redact import redact
from events.replay import replay, until_bound
from events.snapshot import SnapshotStore
from events.state import FleetState, to_builtins
from events.types import EVENT_TYPES
from forge.cli.app import App, echo_data, json_option, pass_app
from forge.cli.consume_cmd import consume
from forge.cli.eventview import details, entries, matches, tag_of
from forge.cli.render import stamp, table
from forge.cli.verify import verify_log

__all__ = ["events", "render_replay_summary", "replay_summary"]

_STREAM_ID = re.compile(r"^\d+(-\d+)?$")


@click.group()
def events() -> None:
    """Read, replay, export and verify the event log."""


_LAST_SECOND = 253402300799.0  # 9999-12-31T23:59:59Z, the last time ISO 8601 can name
_MAX_ID_PART = 2**64 - 1  # each half of a stream id is an unsigned 64-bit number


def parse_moment(text: str) -> str | float:
    """A stream id (`1700000000000-0`) as is, or a time (ISO 8601, or seconds since the
    epoch with a decimal point) as seconds since the epoch; raises click.BadParameter for
    anything else, a negative, infinite or NaN time included."""
    if "-" in text and _STREAM_ID.match(text):
        if any(int(part) > _MAX_ID_PART for part in text.split("-")):
            raise click.BadParameter(f"{text[:40]!r}: a stream id's numbers are below 2**64")
        return text
    try:
        seconds = float(text)
    except ValueError:
        try:
            moment = dt.datetime.fromisoformat(text)
            if moment.tzinfo is None:
                moment = moment.astimezone()
            seconds = moment.timestamp()
        except (ValueError, OverflowError, OSError):
            raise click.BadParameter(
                f"{text[:40]!r} is neither a stream id (1700000000000-0) nor a time "
                "(2025-01-31T12:00:00, or seconds since the epoch)"
            ) from None
    if not 0 <= seconds <= _LAST_SECOND:  # NaN fails this too
        raise click.BadParameter(
            f"{text[:40]!r} is not a time between 1970 and 9999 (seconds since the epoch)"
        )
    return seconds


class _Moment(click.ParamType):  # type: ignore[type-arg]
    name = "ID|TIME"

    def convert(self, value: Any, param: click.Parameter | None, ctx: click.Context | None) -> Any:
        return value if not isinstance(value, str) else parse_moment(value)


MOMENT = _Moment()


def _line(entry_id: str, event: Any) -> str:
    """One event as people read it, secrets masked."""
    return redact(f"{entry_id}  {stamp(event.at)}  {tag_of(event)}  {details(event)}")


@events.command("tail")
@click.option("--follow", "-f", is_flag=True, help="Keep printing new events (Ctrl-C ends).")
@click.option(
    "--type",
    "types",
    multiple=True,
    type=click.Choice(sorted(EVENT_TYPES)),
    help="Only this event type (repeatable).",
)
@click.option("--task", "task_id", help="Only events about this task.")
@click.option("--lines", "-n", type=click.IntRange(0), default=20, show_default=True)
@json_option
@pass_app
def tail_cmd(
    app: App, follow: bool, types: tuple[str, ...], task_id: str | None, lines: int, as_json: bool
) -> None:
    """Print the last events of the log (JSON lines with --json)."""
    store = app.store
    picked = (
        [e for e in entries(store) if matches(e.event, types, task_id)][-lines:] if lines else []
    )

    def emit(entry_id: str, event: Any) -> None:
        if as_json:
            click.echo(msgspec.json.encode({"id": entry_id, **to_builtins(event)}).decode())
        else:
            click.echo(_line(entry_id, event))

    for entry in picked:
        emit(entry.id, entry.event)
    if not follow:
        return
    try:
        for entry in store.tail(after=store.last_id() or "0-0", block_ms=500):
            if matches(entry.event, types, task_id):
                emit(entry.id, entry.event)
    except KeyboardInterrupt:
        return


def replay_summary(state: FleetState) -> dict[str, Any]:
    return {
        "position": state.position,
        "events": state.event_count,
        "last_event_at": state.last_at,
        "tasks": state.counts(),
        "queued": state.queue_length(),
        "agents": {
            status: sum(1 for a in state.agents.values() if a.status == status)
            for status in sorted({a.status for a in state.agents.values()})
        },
        "breakers": {n: b.state for n, b in state.breakers.items()},
        "spend_usd": state.total_cost_usd,
        "daemon_epoch": state.daemon_epoch,
        "anomalies": state.anomalies,
    }


def render_replay_summary(data: dict[str, Any]) -> str:
    tasks = ", ".join(f"{n} {s}" for s, n in sorted(data["tasks"].items())) or "none"
    agents = ", ".join(f"{n} {s}" for s, n in data["agents"].items()) or "none"
    return "\n".join(
        [
            f"state as of {data['position']} ({stamp(data['last_event_at'])}), "
            f"{data['events']} events",
            f"tasks: {tasks}",
            f"queued: {data['queued']}",
            f"agents: {agents}",
            f"breakers: {', '.join(f'{n} {s}' for n, s in data['breakers'].items()) or 'none'}",
            f"spend: ${data['spend_usd']:.4f}   daemon epoch: {data['daemon_epoch']}   "
            f"anomalies: {data['anomalies']}",
        ]
    )


@events.command("replay")
@click.option("--until", type=MOMENT, help="A stream id or a time (default: the end of the log).")
@click.option("--no-snapshot", is_flag=True, help="Fold the whole log, ignoring snapshots.")
@json_option
@pass_app
def replay_cmd(app: App, until: str | float | None, no_snapshot: bool, as_json: bool) -> None:
    """The fleet state as it was at a moment: a summary, or the whole state with --json."""
    state, _ = replay(app.store, until=until, use_snapshot=not no_snapshot)
    if as_json:
        echo_data(to_builtins(state), True, str)
    else:
        click.echo(render_replay_summary(replay_summary(state)))


@events.command("export")
@click.argument(
    "file", type=click.Path(dir_okay=False, writable=True, allow_dash=True, path_type=Path)
)
@click.option("--since", type=MOMENT, help="From this stream id or time (inclusive).")
@click.option("--until", type=MOMENT, help="Up to this stream id or time (inclusive).")
@pass_app
def export_cmd(app: App, file: Path, since: str | float | None, until: str | float | None) -> None:
    """Write events as JSON lines (`{"id": ..., "type": ..., ...}`), secrets masked; FILE `-`
    is stdout."""
    start = "-" if since is None else (since if isinstance(since, str) else str(int(since * 1000)))
    out: IO[str]
    count = 0
    store = app.store  # reach the log before creating the file
    try:
        with open(file, "w", encoding="utf-8") if str(file) != "-" else _stdout() as out:
            for entry in entries(store, start, until_bound(until)):
                out.write(
                    msgspec.json.encode({"id": entry.id, **to_builtins(entry.event)}).decode()
                    + "\n"
                )
                count += 1
    except OSError as e:  # a missing directory, a full disk (ENOSPC shows at flush or close)
        where = "standard output" if str(file) == "-" else str(file)
        raise ForgeError(f"cannot write {where}: {e.strerror or e}") from None
    if str(file) != "-":
        click.echo(f"exported {count} events to {file}")


class _stdout:
    def __enter__(self) -> IO[str]:
        return sys.stdout

    def __exit__(self, *_: object) -> None:
        sys.stdout.flush()


@events.command("verify")
@click.option(
    "--repair-task-index",
    is_flag=True,
    help="Rebuild the per-task index from the log if it disagrees with it.",
)
@json_option
@pass_app
def verify_cmd(app: App, repair_task_index: bool, as_json: bool) -> None:
    """Decode the whole log and check it: quarantined entries, the derived index, the per-task
    index, the newest snapshot, and the running daemon's live state (all against a full
    replay). Exits 1 on any problem."""
    report = verify_log(app, repair_task_index)
    echo_data(report, as_json, lambda r: "\n".join(r.lines))
    if not report.ok:
        raise click.exceptions.Exit(1)


@events.command("stats")
@json_option
@pass_app
def stats_cmd(app: App, as_json: bool) -> None:
    """Counts by event type, length, first and last id, quarantined entries, snapshots."""
    store = app.store
    counts: dict[str, int] = {}
    first = None
    for entry in entries(store):
        first = first or entry.id
        tag = tag_of(entry.event)
        counts[tag] = counts.get(tag, 0) + 1
    data = {
        "namespace": app.settings.redis.namespace,
        "length": store.length(),
        "first_id": first,
        "last_id": store.last_id(),
        "by_type": dict(sorted(counts.items())),
        "quarantined": len(store.quarantined()),
        "snapshots": SnapshotStore(store).positions(),
        "indexed_tasks": len(store.index_entries()),
    }

    def render(d: dict[str, Any]) -> str:
        head = [
            f"namespace: {d['namespace']}   length: {d['length']}",
            f"first: {d['first_id'] or '-'}   last: {d['last_id'] or '-'}",
            f"quarantined: {d['quarantined']}   indexed tasks: {d['indexed_tasks']}",
            f"snapshots: {', '.join(d['snapshots']) or 'none'}",
        ]
        rows = [[tag, n] for tag, n in d["by_type"].items()]
        return "\n".join(head + (["", table(["TYPE", "COUNT"], rows)] if rows else []))

    echo_data(data, as_json, render)


events.add_command(consume)
