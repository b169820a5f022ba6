"""A lab of Forge nodes, each in a network namespace of its own, sharing one Redis over TCP.

Each node `i` of a lab gets a netns `fgn-<tag>-<i>` (its `lo` up) and a veth pair: the host
side `fgn<tag>h<i>` in the root namespace with 10.213.<X>.<4i+1>/30, the node side
`fgn<tag>n<i>` in the netns with 10.213.<X>.<4i+2>/30. A Debian `redis-server` runs in the root
namespace, bound to 127.0.0.1 and every host-side address only, with an append-only file in the
lab's directory. Nodes have no other route: their traffic stays between their netns and the host
side of their veth, and the CLI run from the root namespace reaches Redis on 127.0.0.1.

A node is `forge daemon start --foreground` under `ip netns exec`, with a FORGE_HOME of its own.
It can be started, stopped the way a user stops it (`forge daemon stop` in its netns), killed
(SIGKILL to every process of its netns: the daemon and all its agents), cut off (its host-side
link down) and healed. `<tag>` is random per lab, and X is a third octet no other interface of
the machine uses, so parallel or leftover labs do not collide. `Lab.close` removes everything
the lab made, whatever state it is in.
"""

from __future__ import annotations

import contextlib
import fcntl
import os
import re
import secrets
import shutil
import signal
import socket
import subprocess
import sys
import tempfile
import time
from collections.abc import Callable
from pathlib import Path
from types import TracebackType
from typing import Any, TypeVar

import msgspec
import redis

from events.state import to_builtins
from events.store import EventStore
from forge.daemon_process import DaemonFiles

__all__ = ["Lab", "Node", "NodeLog", "unavailable"]

T = TypeVar("T")

DAEMON_START = ("daemon", "start", "--foreground")
ADDRESS_LOCK = Path("/tmp/fgn-addresses.lock")  # held while a lab picks and claims its block


def unavailable() -> str | None:
    """Why this machine cannot run a lab (not root, no `ip netns`, no redis-server), or None."""
    if os.geteuid() != 0:
        return "network namespaces need root"
    for tool in ("ip", "redis-server"):
        if shutil.which(tool) is None:
            return f"{tool} is not installed"
    probe = f"fgn-probe-{secrets.token_hex(3)}"
    made = subprocess.run(
        ["ip", "netns", "add", probe], capture_output=True, text=True, check=False
    )
    if made.returncode != 0:
        return f"`ip netns add` fails here: {made.stderr.strip()}"
    subprocess.run(["ip", "netns", "delete", probe], capture_output=True, check=False)
    return None


def wait_for(what: str, probe: Callable[[], T | None], timeout: float, every: float = 0.1) -> T:
    """Poll `probe` until it returns something truthy; fail with `what` after `timeout` s."""
    deadline = time.monotonic() + timeout
    while True:
        value = probe()
        if value:
            return value
        if time.monotonic() > deadline:
            raise AssertionError(f"timed out after {timeout:.0f} s waiting for {what}")
        time.sleep(every)


def _ip(*args: str, check: bool = True) -> subprocess.CompletedProcess[str]:
    done = subprocess.run(["ip", *args], capture_output=True, text=True, check=False)
    if check and done.returncode != 0:
        raise RuntimeError(f"ip {' '.join(args)}: {done.stderr.strip()}")
    return done


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        port: int = s.getsockname()[1]
        return port


def _octets_in_use() -> set[int]:
    listing = _ip("-4", "-o", "addr", "show").stdout
    return {int(m) for m in re.findall(r"inet 10\.213\.(\d+)\.", listing)}


class Node:
    """One node of a lab: its netns, veth pair, addresses, home and daemon process."""

    def __init__(self, lab: Lab, index: int) -> None:
        self.index = index
        self.netns = f"fgn-{lab.tag}-{index}"
        self.host_link = f"fgn{lab.tag}h{index}"
        self.node_link = f"fgn{lab.tag}n{index}"
        self.host_ip = f"10.213.{lab.octet}.{4 * index + 1}"
        self.node_ip = f"10.213.{lab.octet}.{4 * index + 2}"
        self.home = lab.root / f"n{index}"
        self.home.mkdir()
        self.files = DaemonFiles(self.home)
        self.daemon: subprocess.Popen[bytes] | None = None
        self.cut = False
        self.env: dict[str, str] = {}  # this node's own settings (FORGE_NODE_LABELS, ...)

    @property
    def node_id(self) -> str | None:
        """The id this node's daemon runs (or last ran) as, from its home."""
        record = self.files.read()
        if record is not None:
            return record.node_id
        with contextlib.suppress(OSError):
            return self.files.nodefile.read_text().strip() or None
        return None

    def pids(self) -> list[int]:
        """Every process in this node's netns (the daemon, its shims and their commands)."""
        done = _ip("netns", "pids", self.netns, check=False)
        return [int(p) for p in done.stdout.split()]

    def agent_pids(self) -> list[int]:
        """The processes of the netns outside the daemon's own session: its agents (each shim
        runs in a session of its own) and what they started."""
        daemon = self.daemon.pid if self.daemon is not None else None
        out = []
        for pid in self.pids():
            try:
                if daemon is None or os.getsid(pid) != daemon:
                    out.append(pid)
            except OSError:  # gone meanwhile
                continue
        return out


class Lab:
    """Redis and N nodes in network namespaces; use as a context manager (it always cleans up)."""

    def __init__(self, nodes: int, *, lease_ttl: float = 3.0, env: dict[str, str] | None = None):
        self.tag = secrets.token_hex(3)
        self.root = Path(tempfile.mkdtemp(prefix=f"fgn-{self.tag}-", dir="/tmp"))
        self.marks = self.root / "marks"  # tasks' commands write here (shared by every node)
        self.marks.mkdir()
        self.namespace = f"n{self.tag}"
        self.port = _free_port()
        self.count = nodes
        self.octet = -1
        self.nodes: list[Node] = []
        self.redis_proc: subprocess.Popen[bytes] | None = None
        self._client: redis.Redis | None = None
        base = {k: v for k, v in os.environ.items() if not k.startswith(("FORGE_", "PYTEST_"))}
        self.env = (
            base
            | {
                "FORGE_REDIS_NAMESPACE": self.namespace,
                "FORGE_NODE_LEASE_TTL": f"{lease_ttl:g}",
                "FORGE_ORCHESTRATOR_SHUTDOWN_GRACE": "5",
                "FORGE_ORCHESTRATOR_MAX_CONCURRENT_AGENTS": "4",
                "FORGE_RETRY_BASE_DELAY": "0.1",
                "FORGE_RETRY_MAX_DELAY": "1",
                "FORGE_LOG_FORMAT": "json",
            }
            | (env or {})
        )
        self.lease_ttl = lease_ttl
        self.cli_home = self.root / "cli"
        self.cli_home.mkdir()

    # -- set-up and tear-down ----------------------------------------------------------

    def __enter__(self) -> Lab:
        try:
            self._network()
            self._redis()
        except BaseException:
            self.close()
            raise
        return self

    def __exit__(
        self, kind: type[BaseException] | None, exc: BaseException | None, tb: TracebackType | None
    ) -> None:
        self.close()

    def _network(self) -> None:
        with open(ADDRESS_LOCK, "a") as lock:
            fcntl.flock(lock, fcntl.LOCK_EX)
            used = _octets_in_use()
            free = [x for x in range(256) if x not in used]
            if not free:
                raise RuntimeError("no free 10.213.X.0/24 block for a lab")
            self.octet = secrets.choice(free)
            for i in range(self.count):
                node = Node(self, i)
                self.nodes.append(node)
                _ip("netns", "add", node.netns)
                _ip("-n", node.netns, "link", "set", "lo", "up")
                _ip("link", "add", node.host_link, "type", "veth", "peer", "name", node.node_link)
                _ip("link", "set", node.node_link, "netns", node.netns)
                _ip("addr", "add", f"{node.host_ip}/30", "dev", node.host_link)
                _ip("link", "set", node.host_link, "up")
                _ip("-n", node.netns, "addr", "add", f"{node.node_ip}/30", "dev", node.node_link)
                _ip("-n", node.netns, "link", "set", node.node_link, "up")

    def _redis(self) -> None:
        data = self.root / "redis"
        data.mkdir()
        binds = " ".join(["127.0.0.1", *(n.host_ip for n in self.nodes)])
        options = {
            "port": str(self.port),
            "bind": binds,
            "protected-mode": "no",
            "save": "",
            "appendonly": "yes",
            "dir": str(data),
            "daemonize": "no",
        }
        log = open(data / "redis.log", "ab")  # noqa: SIM115 - the child owns it
        self.redis_proc = subprocess.Popen(
            ["redis-server", *(arg for k, v in options.items() for arg in (f"--{k}", v))],
            stdout=log,
            stderr=subprocess.STDOUT,
            start_new_session=True,
        )
        log.close()

        def answers() -> bool:
            try:
                return bool(self.client.ping())
            except redis.RedisError:
                return False

        wait_for("redis-server to answer", answers, 15)

    def close(self) -> None:
        """Kill every process of every node, remove the namespaces and links, stop Redis."""
        for node in self.nodes:
            with contextlib.suppress(Exception):
                self.kill(node.index)
        for node in self.nodes:
            _ip("netns", "delete", node.netns, check=False)
            # deleting the netns destroys the node side, and with it the host side
            _ip("link", "delete", node.host_link, check=False)
        if self._client is not None:
            self._client.close()
        if self.redis_proc is not None:
            self.redis_proc.kill()
            self.redis_proc.wait(timeout=10)
        shutil.rmtree(self.root, ignore_errors=True)

    # -- Redis and the CLI from the root namespace -----------------------------------

    @property
    def client(self) -> redis.Redis:
        if self._client is None:
            self._client = redis.Redis(
                host="127.0.0.1", port=self.port, socket_timeout=10, socket_connect_timeout=5
            )
        return self._client

    def cli_env(self) -> dict[str, str]:
        return self.env | {
            "FORGE_HOME": str(self.cli_home),
            "FORGE_REDIS_URL": f"redis://127.0.0.1:{self.port}/0",
        }

    def forge(self, *args: str, timeout: float = 60) -> subprocess.CompletedProcess[str]:
        """The `forge` CLI from the root namespace, on Redis at 127.0.0.1."""
        return subprocess.run(
            [sys.executable, "-m", "forge", *args],
            env=self.cli_env(),
            capture_output=True,
            text=True,
            timeout=timeout,
            check=False,
        )

    def forge_json(self, *args: str) -> Any:
        done = self.forge(*args, "--json")
        if done.returncode not in (0, 1) or not done.stdout.strip():
            raise AssertionError(f"forge {' '.join(args)} --json: {done.stderr.strip()}")
        return msgspec.json.decode(done.stdout)

    def submit(self, commands: dict[str, str], **fields: Any) -> dict[str, str]:
        """Submit one shell task per name (a tasks file, one CLI call); name -> task id."""
        lines = []
        for name, command in commands.items():
            lines += ["[[task]]", f"name = {_toml(name)}", f"command = {_toml(command)}"]
            lines += [f"{key} = {_toml(value)}" for key, value in fields.items()]
            lines.append("")
        path = self.root / f"tasks-{secrets.token_hex(3)}.toml"
        path.write_text("\n".join(lines))
        done = self.forge("task", "submit", "--file", str(path), "--json", timeout=120)
        if done.returncode != 0:
            raise AssertionError(f"forge task submit: {done.stderr.strip()}")
        ids: list[str] = msgspec.json.decode(done.stdout)["task_ids"]
        return dict(zip(commands, ids, strict=True))

    def marked(self, name: str, seconds: float) -> str:
        """A shell command that marks its start and its end in `marks/<name>` around a sleep
        (each with the time and its network namespace), so a command that ran to its end twice
        is seen whatever the log says."""
        mark = self.marks / name
        stamp = "$(date +%s.%N) $(readlink /proc/self/ns/net)"
        return f"echo start {stamp} >> {mark}; sleep {seconds:g}; echo end {stamp} >> {mark}"

    def runs(self, name: str) -> tuple[int, int]:
        """(starts, ends) marked by the commands of task `name`."""
        marks = self.run_marks(name)
        return sum(m[0] == "start" for m in marks), sum(m[0] == "end" for m in marks)

    def run_marks(self, name: str) -> list[tuple[str, float, int | None]]:
        """What the commands of task `name` marked: (start or end, when, which node)."""
        try:
            lines = (self.marks / name).read_text().splitlines()
        except FileNotFoundError:
            return []
        by_netns = {}
        for node in self.nodes:
            with contextlib.suppress(OSError):
                by_netns[f"net:[{os.stat(f'/run/netns/{node.netns}').st_ino}]"] = node.index
        out: list[tuple[str, float, int | None]] = []
        for line in lines:
            kind, when, netns = [*line.split(), "", ""][:3]
            with contextlib.suppress(ValueError):
                out.append((kind, float(when), by_netns.get(netns)))
        return out

    def log(self) -> NodeLog:
        """Every event of the lab's namespace, read now."""
        store = EventStore(self.client, self.namespace)
        return NodeLog([{"id": e.id, **to_builtins(e.event)} for e in store.read_range()])

    def verify(self) -> tuple[bool, str]:
        """`forge events verify`: (clean, its output)."""
        done = self.forge("events", "verify", timeout=120)
        return done.returncode == 0, (done.stdout + done.stderr).strip()

    # -- nodes ------------------------------------------------------------------------

    def node_env(self, index: int) -> dict[str, str]:
        node = self.nodes[index]
        return (
            self.env
            | {
                "FORGE_HOME": str(node.home),
                "FORGE_REDIS_URL": f"redis://{node.host_ip}:{self.port}/0",
            }
            | node.env
        )

    def start(self, index: int, env: dict[str, str] | None = None) -> Node:
        """`forge daemon start --foreground` in the node's netns (its output in its home);
        `env` sets this node's own settings, kept for its later starts and CLI calls."""
        node = self.nodes[index]
        node.env |= env or {}
        if node.daemon is not None and node.daemon.poll() is None:
            raise RuntimeError(f"node {index} already runs")
        log = open(node.home / "foreground.log", "ab")  # noqa: SIM115 - the child owns it
        node.daemon = subprocess.Popen(
            ["ip", "netns", "exec", node.netns, sys.executable, "-m", "forge", *DAEMON_START],
            env=self.node_env(index),
            stdout=log,
            stderr=subprocess.STDOUT,
            start_new_session=True,
        )
        log.close()
        return node

    def forge_on(
        self, index: int, *args: str, timeout: float = 60
    ) -> subprocess.CompletedProcess[str]:
        """The `forge` CLI inside node `index`'s netns, with its FORGE_HOME."""
        node = self.nodes[index]
        return subprocess.run(
            ["ip", "netns", "exec", node.netns, sys.executable, "-m", "forge", *args],
            env=self.node_env(index),
            capture_output=True,
            text=True,
            timeout=timeout,
            check=False,
        )

    def kill(self, index: int) -> None:
        """SIGKILL every process of the node's netns (the daemon and its whole tree)."""
        node = self.nodes[index]
        deadline = time.monotonic() + 15
        while pids := node.pids():
            for pid in pids:
                with contextlib.suppress(ProcessLookupError):
                    os.kill(pid, signal.SIGKILL)
            if time.monotonic() > deadline:
                raise RuntimeError(f"processes of {node.netns} survive SIGKILL: {pids}")
            time.sleep(0.02)
        if node.daemon is not None:
            node.daemon.kill()
            node.daemon.wait(timeout=10)

    def cut(self, index: int) -> None:
        """Cut the node off Redis: its host-side link down (its processes keep running)."""
        node = self.nodes[index]
        _ip("link", "set", node.host_link, "down")
        node.cut = True

    def heal(self, index: int) -> None:
        node = self.nodes[index]
        _ip("link", "set", node.host_link, "up")
        node.cut = False

    def node_dump(self, index: int, lines: int = 40) -> str:
        """The tail of a node's daemon output, for a failing assertion's message."""
        node = self.nodes[index]
        text = ""
        for name in ("foreground.log", "daemon.log"):
            with contextlib.suppress(OSError):
                text += f"--- {name}\n" + "\n".join(
                    (node.home / name).read_text(errors="replace").splitlines()[-lines:]
                )
        return text


def _toml(value: Any) -> str:
    if isinstance(value, bool):
        return "true" if value else "false"
    if isinstance(value, int | float):
        return repr(value)
    if isinstance(value, list):
        return "[" + ", ".join(_toml(v) for v in value) + "]"
    return msgspec.json.encode(str(value)).decode()  # a JSON string is a TOML basic string


class NodeLog:
    """The events of a lab's namespace as JSON-ready dicts (`{"id", "type", ...}`), and the
    questions the tests ask of them."""

    def __init__(self, events: list[dict[str, Any]]) -> None:
        self.events = events

    def of(self, kind: str) -> list[dict[str, Any]]:
        return [e for e in self.events if e.get("type") == kind]

    def count_by_task(self, kind: str) -> dict[str, int]:
        out: dict[str, int] = {}
        for e in self.of(kind):
            out[e["task_id"]] = out.get(e["task_id"], 0) + 1
        return out

    def completed(self) -> dict[str, int]:
        """Task id -> how many task.completed events it has."""
        return self.count_by_task("task.completed")

    def agent_nodes(self) -> dict[str, str]:
        """Agent id -> the node that spawned it."""
        return {e["agent_id"]: e.get("node_id", "") for e in self.of("agent.spawned")}

    def started_on(self) -> dict[str, list[str]]:
        """Task id -> the node of each of its started attempts, in order."""
        agents = self.agent_nodes()
        out: dict[str, list[str]] = {}
        for e in self.of("task.started"):
            node = e.get("node_id") or agents.get(e["agent_id"], "?")
            out.setdefault(e["task_id"], []).append(node)
        return out

    def completed_on(self) -> dict[str, str]:
        """Task id -> the node of the attempt that completed it (the last, if several)."""
        agents = self.agent_nodes()
        return {
            e["task_id"]: e.get("node_id") or agents.get(e["agent_id"], "?")
            for e in self.of("task.completed")
        }

    def story(self, task_id: str) -> str:
        """How a task's attempts went, from its events (for a failing figure's message)."""
        agents = self.agent_nodes()
        parts = []
        for e in self.events:
            if e.get("task_id") != task_id or e["type"] == "task.submitted":
                continue
            node = e.get("node_id") or agents.get(e.get("agent_id", ""), "")
            why = ": ".join(w for w in (e.get("failure"), e.get("reason")) if w)
            parts.append(
                f"{e['type'].removeprefix('task.')} a{e.get('attempt', '')}"
                + (f" e{e['epoch']}" if "epoch" in e else "")
                + (f" {node}" if node else "")
                + (f" ({why})" if why else "")
            )
        return "; ".join(parts)

    def epochs(self, node_id: str) -> list[int]:
        """The epochs node `node_id` started with, in order (daemon.started and lease_taken)."""
        seen: list[int] = []
        for e in self.events:
            if (
                e.get("type") in ("daemon.started", "node.lease_taken")
                and e.get("node_id") == node_id
                and e["epoch"] not in seen
            ):
                seen.append(e["epoch"])
        return seen

    def lease_lost(self, node_id: str) -> list[dict[str, Any]]:
        return [e for e in self.of("node.lease_lost") if e.get("node_id") == node_id]
