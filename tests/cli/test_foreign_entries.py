"""Every command that reads the log stays usable whatever else the stream holds: any bytes as
field names and values, missing fields, events with absurd times, mixed with valid events."""

from __future__ import annotations

import json
import math
import sys
from pathlib import Path

import msgspec
import pytest
import redis
from click.testing import Result
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from forge.cli.render import duration, stamp
from forge.server import EmbeddedServer
from tests.cli.helpers import completed_task, invoke, store_of

pytestmark = pytest.mark.usefixtures("forge_env")

TASK = "task-done"

_names = st.one_of(st.binary(max_size=6), st.sampled_from([b"d", b"v", b"\xf0\x28"]))
_values = st.one_of(st.binary(max_size=40), st.sampled_from([b"1", b"2", b"", b"\xc1"]))
_raw_entry = st.dictionaries(_names, _values, min_size=1, max_size=4)
_absurd_time = st.one_of(
    st.sampled_from([math.nan, math.inf, -math.inf, 1e300, -1.0, 1e12]), st.floats()
)


@st.composite
def _event_with_time(draw: st.DrawFn) -> dict[bytes, bytes]:
    """A well-formed event of the real task whose time may be anything a float can be."""
    data = {"type": "task.progress", "task_id": TASK, "attempt": 1, "message": "hi"}
    return {b"d": msgspec.msgpack.encode({**data, "at": draw(_absurd_time)}), b"v": b"1"}


foreign_entries = st.lists(st.one_of(_raw_entry, _event_with_time()), min_size=1, max_size=4)


def _ends_cleanly(result: Result, args: list[str]) -> None:
    assert result.exit_code in (0, 1, 2), (args, result.exit_code, result.stderr)
    assert result.stderr.count("\n") <= 1, (args, result.stderr)
    assert "Traceback" not in result.stderr + result.stdout, args


def _reading_commands(export: Path) -> list[list[str]]:
    return [
        ["status"],
        ["status", "--json"],
        ["task", "list"],
        ["task", "list", "--json"],
        ["task", "show", TASK],
        ["task", "history", TASK],
        ["events", "tail", "--lines", "1000"],
        ["events", "tail", "--lines", "1000", "--json"],
        ["events", "replay"],
        ["events", "verify"],
        ["events", "export", str(export)],
        ["events", "stats"],
    ]


@settings(
    max_examples=30,
    deadline=None,
    suppress_health_check=[HealthCheck.function_scoped_fixture, HealthCheck.too_slow],
)
@given(before=foreign_entries, after=foreign_entries)
def test_every_reading_command_survives_foreign_entries(
    redis_client: redis.Redis,
    tmp_path: Path,
    before: list[dict[bytes, bytes]],
    after: list[dict[bytes, bytes]],
) -> None:
    redis_client.flushall()
    log = store_of(redis_client).keys.log
    for fields in before:
        redis_client.xadd(log, fields)  # type: ignore[arg-type]
    completed_task(redis_client, TASK)
    for fields in after:
        redis_client.xadd(log, fields)  # type: ignore[arg-type]
    valid_ids = [e.id for e in store_of(redis_client).read_range()]
    export = tmp_path / "export.jsonl"

    results = {}
    for args in _reading_commands(export):
        results[" ".join(args)] = result = invoke(args)
        _ends_cleanly(result, args)

    assert TASK in results["task list"].stdout
    assert "completed" in results[f"task show {TASK}"].stdout
    tail = results["events tail --lines 1000 --json"].stdout
    tailed = [json.loads(line)["id"] for line in tail.splitlines()]
    assert tailed == valid_ids
    exported = [json.loads(line)["id"] for line in export.read_text().splitlines()]
    assert exported == valid_ids


def test_a_time_no_calendar_can_show_is_rendered_as_its_number() -> None:
    assert stamp(math.nan) == "nan"
    assert stamp(1e300) == "1e+300"
    assert stamp(-math.inf) == "-inf"
    assert duration(math.nan) == "-"
    assert duration(math.inf) == "-"


POISON = """
import math
import sys

import msgspec
import redis

client = redis.Redis(unix_socket_path=sys.argv[1])
client.xadd(sys.argv[2], {b"\\xf0\\x28": b"x"})
stop = {"type": "daemon.stop_requested", "at": math.nan}
client.xadd(sys.argv[2], {b"d": msgspec.msgpack.encode(stop), b"v": b"1"})
"""


def test_a_running_fleet_outlives_foreign_entries(
    redis_client: redis.Redis, embedded_server: EmbeddedServer, tmp_path: Path
) -> None:
    """One is in the log before the fleet starts; others are appended by a task while the
    fleet runs (read by its tail); the next task still runs."""
    log = store_of(redis_client).keys.log
    redis_client.xadd(log, {b"\xf0\x28": b"x"})
    script = tmp_path / "poison.py"
    script.write_text(POISON)
    poison = [sys.executable, str(script), str(embedded_server.socket), log]
    tasks = tmp_path / "tasks.toml"
    tasks.write_text(
        f"[[task]]\nname = 'poison'\ncommand = {json.dumps(poison)}\n\n"
        "[[task]]\nname = 'next'\ncommand = ['true']\nafter = ['poison']\n"
    )

    result = invoke(["run", str(tasks), "--namespace", "forge", "--json"])

    assert result.exit_code == 0, result.stdout + result.stderr
    summary = json.loads(result.stdout)
    assert [x["state"] for x in summary["tasks"]] == ["completed", "completed"]
    assert len(store_of(redis_client).quarantined()) == 3
