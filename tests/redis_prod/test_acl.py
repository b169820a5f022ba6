"""Password and ACL user against a real redis-server: Forge works as a user holding exactly the
privileges docs/redis.md lists (a daemon runs tasks, the log verifies, nothing is refused),
fails with one clear line when one is missing, and never shows a password."""

from __future__ import annotations

import ast
import json
import re
import signal
import subprocess
import sys
import time
from pathlib import Path

import pytest

from events.keys import Keys
from tests.redis_prod.acl import COMMANDS, acl_setuser
from tests.redis_prod.conftest import forge, forge_env, one_error_line
from tests.redis_prod.servers import RedisProcess, RedisSet

ADMIN_PASSWORD = "admin-Canary-8c1f"
USER_PASSWORD = "forge-Canary-77d2"
ROOT = Path(__file__).resolve().parents[2]
DONE = {"completed", "failed", "dead_lettered", "cancelled"}


def _acl(server: RedisProcess, line: str) -> None:
    with server.client() as admin:
        admin.execute_command(*line.split())
        admin.execute_command("ACL", "LOG", "RESET")


def _url(server: RedisProcess, password: str = USER_PASSWORD, user: str = "forge") -> str:
    return f"redis://{user}:{password}@127.0.0.1:{server.port}/0"


def _wait_done(env: dict[str, str], count: int, timeout: float = 30.0) -> list[dict[str, str]]:
    deadline = time.monotonic() + timeout
    while True:
        listed = json.loads(forge(env, "task", "list", "--json").stdout)
        if len(listed) == count and all(task["state"] in DONE for task in listed):
            return list(listed)
        assert time.monotonic() < deadline, listed
        time.sleep(0.2)


def _consume_into_dead_letters(server: RedisProcess, env: dict[str, str], count: int) -> None:
    """`forge events consume` with a handler that fails: consumer groups and dead letters."""
    args = ["events", "consume", "--group", "g", "--exec", "exit 1", "--retries", "0"]
    args += ["--from-start", "--type", "task.submitted"]
    consumer = subprocess.Popen(
        [sys.executable, "-m", "forge", *args],
        env=env,
        stdout=subprocess.DEVNULL,
        stderr=subprocess.PIPE,
        text=True,
    )
    dead = Keys.for_namespace("forge").dead_letters("g")
    try:
        with server.client() as admin:
            deadline = time.monotonic() + 30
            while admin.xlen(dead) < count and consumer.poll() is None:
                assert time.monotonic() < deadline, "no dead letters"
                time.sleep(0.1)
    finally:
        consumer.terminate()
        _, errors = consumer.communicate(timeout=30)
    assert consumer.returncode in (0, -signal.SIGTERM), errors


def test_a_daemon_runs_as_the_least_privileged_user(servers: RedisSet, tmp_path: Path) -> None:
    server = servers.server(password=ADMIN_PASSWORD)
    _acl(server, acl_setuser("forge", USER_PASSWORD, "forge"))
    env = forge_env(tmp_path / "home", _url(server))
    env |= {"FORGE_ORCHESTRATOR_SHUTDOWN_GRACE": "5", "FORGE_RETRY_BASE_DELAY": "0.1"}

    ok = forge(env, "task", "submit", "--command", "echo hi")
    failing = forge(env, "task", "submit", "--command", "exit 3")
    assert ok.returncode == 0, ok.stderr
    assert failing.returncode == 0, failing.stderr
    started = forge(env, "daemon", "start")
    try:
        assert started.returncode == 0, started.stderr
        states = {t["task_id"]: t["state"] for t in _wait_done(env, 2)}
        assert states == {ok.stdout.strip(): "completed", failing.stdout.strip(): "failed"}
        status = forge(env, "status")
        assert status.returncode == 0, status.stderr
    finally:
        stopped = forge(env, "daemon", "stop")
    assert stopped.returncode == 0, stopped.stderr
    verified = forge(env, "events", "verify")
    assert verified.returncode == 0, verified.stdout + verified.stderr
    _consume_into_dead_letters(server, env, count=2)

    with server.client() as admin:
        assert admin.execute_command("ACL", "LOG") == []  # nothing Forge did was refused
    daemon_log = (tmp_path / "home" / "daemon.log").read_text()
    for text in (status.stdout, daemon_log, verified.stdout):
        assert USER_PASSWORD not in text
        assert ADMIN_PASSWORD not in text
    assert f"redis://forge:***@127.0.0.1:{server.port}/0" in status.stdout


@pytest.mark.parametrize("missing", ["evalsha", "xadd"])
def test_one_privilege_fewer_fails_in_one_clear_line(
    servers: RedisSet, tmp_path: Path, missing: str
) -> None:
    server = servers.server(password=ADMIN_PASSWORD)
    _acl(server, acl_setuser("forge", USER_PASSWORD, "forge", without=missing))
    env = forge_env(tmp_path, _url(server))

    line = one_error_line(forge(env, "task", "submit", "--command", "true"))

    assert "lacks a privilege Forge needs" in line  # evalsha named; xadd is inside a script
    assert ("'evalsha'" in line) == (missing == "evalsha")
    assert USER_PASSWORD not in line


def test_another_namespace_is_out_of_reach(servers: RedisSet, tmp_path: Path) -> None:
    server = servers.server(password=ADMIN_PASSWORD)
    _acl(server, acl_setuser("forge", USER_PASSWORD, "forge"))
    env = forge_env(tmp_path, _url(server), namespace="other")

    line = one_error_line(forge(env, "task", "submit", "--command", "true"))

    assert "lacks a privilege Forge needs" in line


def test_a_wrong_password_is_one_line_without_the_password(
    servers: RedisSet, tmp_path: Path
) -> None:
    server = servers.server(password=ADMIN_PASSWORD)
    wrong = "Wrong-Canary-Pw-31"

    for env in (
        forge_env(tmp_path, _url(server, wrong, "default")),
        forge_env(tmp_path, f"redis://127.0.0.1:{server.port}/0", password=wrong),
    ):
        for args in (["status"], ["task", "submit", "--command", "true"]):
            line = one_error_line(forge(env, *args))
            assert "cannot reach Redis" in line, line
            assert wrong not in line


def test_the_password_may_come_from_the_environment(servers: RedisSet, tmp_path: Path) -> None:
    server = servers.server(password=ADMIN_PASSWORD)
    _acl(server, acl_setuser("forge", USER_PASSWORD, "forge"))
    env = forge_env(
        tmp_path,
        f"redis://127.0.0.1:{server.port}/0",
        username="forge",
        password=USER_PASSWORD,
    )

    submitted = forge(env, "task", "submit", "--command", "true")
    shown = forge(env, "config", "show")

    assert submitted.returncode == 0, submitted.stderr
    assert USER_PASSWORD not in shown.stdout + shown.stderr


# -- the list is complete: every command Forge's code sends is in it -------------------------

# redis-py client methods -> the commands they send (checked against COMMANDS)
METHODS = {
    "ping": ["ping"],
    "register_script": ["evalsha", "script|load"],
    "script_load": ["script|load"],
    "xadd": ["xadd"],
    "xrange": ["xrange"],
    "xrevrange": ["xrevrange"],
    "xread": ["xread"],
    "xlen": ["xlen"],
    "xtrim": ["xtrim"],
    "xreadgroup": ["xreadgroup"],
    "xgroup_create": ["xgroup|create"],
    "xautoclaim": ["xautoclaim"],
    "xpending_range": ["xpending"],
    "xack": ["xack"],
    "hget": ["hget"],
    "hset": ["hset"],
    "hsetnx": ["hsetnx"],
    "hgetall": ["hgetall"],
    "hmget": ["hmget"],
    "hvals": ["hvals"],
    "hdel": ["hdel"],
    "get": ["get"],
    "set": ["set"],
    "mget": ["mget"],
    "delete": ["del"],
    "zadd": ["zadd"],
    "zrange": ["zrange"],
    "zrem": ["zrem"],
    "sadd": ["sadd"],
    "smembers": ["smembers"],
    "scan_iter": ["scan"],
    "pipeline": ["multi", "exec"],
}
# receivers that are Redis clients or pipelines in Forge's code
CLIENTS = {"client", "pipe", "conn"}
EMBEDDED_ONLY = {"forge/server.py"}  # INFO, SHUTDOWN: the embedded server, Forge's own


def _calls() -> set[tuple[str, str]]:
    """(file, method) of every method called on something named like a client."""
    found = set()
    for package in ("events", "actors", "forge"):
        for path in (ROOT / package).rglob("*.py"):
            relative = str(path.relative_to(ROOT))
            if relative in EMBEDDED_ONLY:
                continue
            for node in ast.walk(ast.parse(path.read_text())):
                if not (isinstance(node, ast.Call) and isinstance(node.func, ast.Attribute)):
                    continue
                receiver = node.func.value
                name = receiver.attr if isinstance(receiver, ast.Attribute) else None
                name = receiver.id if isinstance(receiver, ast.Name) else name
                if name in CLIENTS:
                    found.add((relative, node.func.attr))
    return found


def test_every_command_forge_sends_is_in_the_list() -> None:
    ignored = {"close", "disconnect", "execute", "send_command", "read_response", "connection"}
    ignored |= {"get_connection", "release", "connection_pool", "ping"}
    unknown = sorted(
        f"{file}: {method}"
        for file, method in _calls()
        if method not in METHODS and method not in ignored
    )
    assert unknown == [], "map these client calls to commands in METHODS and COMMANDS"
    needed = {c for _, m in _calls() if m in METHODS for c in METHODS[m]}
    for script in (ROOT / "events" / "lua").glob("*.lua"):
        needed |= {c.lower() for c in re.findall(r"redis\.p?call\('(\w+)'", script.read_text())}
    needed |= {"evalsha", "wait"}  # EventStore.pages sends EVALSHA itself; WAIT: connection
    assert needed - set(COMMANDS) == set()


def test_the_docs_show_the_acl_line() -> None:
    docs = (ROOT / "docs" / "redis.md").read_text()
    assert acl_setuser("forge", "<password>", "forge") in docs
