"""The commented settings file `forge config init` writes: one line about each setting, written
above it, and the rendering of every default (`default_config_text`).

Apart from `forge.settings`, which loads and checks settings: this is text for people, and
nothing that loads settings needs it.
"""

from __future__ import annotations

from typing import Any

import msgspec

from forge.settings import SECTIONS

__all__ = ["FIELD_DOCS", "default_config_text"]

FIELD_DOCS = {
    "redis.url": "Use this Redis/Valkey instead of the embedded server (redis://, rediss://, "
    "unix://, redis+sentinel://host:port,host:port/service; a user and password may be in the "
    "URL). See docs/redis.md.",
    "redis.username": "ACL user for redis.url when it is not in the URL.",
    "redis.password": "Password for redis.url when it is not in the URL.",
    "redis.namespace": "Prefix of every key Forge writes; one namespace is one fleet.",
    "redis.appendfsync": "Embedded server AOF fsync policy: always or everysec.",
    "redis.connect_timeout": "Seconds to wait for Redis before giving up.",
    "redis.tls_ca": "PEM file of the CA that signed the server's certificate (rediss://).",
    "redis.tls_cert": "PEM file of Forge's client certificate, if the server asks for one.",
    "redis.tls_key": "PEM file of the client certificate's private key.",
    "redis.tls_check_hostname": "Check that the server's certificate names its host.",
    "redis.sentinel_password": "Password of the sentinels (redis+sentinel://), if they have one.",
    "redis.failover_timeout": "Seconds a command keeps retrying while Sentinel promotes a new "
    "master.",
    "redis.wait_replicas": "After each append to the log, WAIT for this many replicas to have it "
    "(0: do not wait); an append they do not confirm fails.",
    "redis.wait_timeout": "Seconds an append waits for redis.wait_replicas.",
    "orchestrator.max_concurrent_agents": "Most agents alive at once.",
    "orchestrator.health_check_interval": "Seconds between agent health checks.",
    "orchestrator.idle_agent_timeout": "Seconds an idle agent lives before it is retired.",
    "orchestrator.shutdown_grace": "Seconds running tasks get to finish on shutdown.",
    "orchestrator.snapshot_every": "Write a snapshot of the fleet state every N events.",
    "orchestrator.fleet_budget_usd": "Stop starting attempts once recorded spend reaches this.",
    "node.lease_ttl": "Seconds a node's lease lasts unrenewed; then other nodes record it lost "
    "and run its tasks.",
    "node.labels": "Labels of this node; when set, it only takes tasks whose tags it all has.",
    "breaker.failure_threshold": "Consecutive failures that open a circuit breaker.",
    "breaker.success_threshold": "Successes in half-open state that close it again.",
    "breaker.open_timeout": "Seconds a breaker stays open before a trial (half-open).",
    "retry.max_attempts": "Attempts per task, the first one included.",
    "retry.base_delay": "Seconds before the first retry.",
    "retry.multiplier": "Each further retry waits this many times longer.",
    "retry.max_delay": "Upper bound of a retry delay, in seconds.",
    "retry.jitter": "Random spread of a delay, as a fraction of it (0 to 1).",
    "runtime.default": "Runtime of tasks that do not name one: shell or claude.",
    "runtime.claude_binary": "Path of the claude CLI (else PATH, else the claude-agent-sdk wheel).",
    "runtime.default_model": "Model passed to claude when a task names none.",
    "runtime.task_timeout": "Seconds a task may run when it sets no timeout.",
    "runtime.env_allowlist": "Environment variables passed through to agents.",
    "logging.level": "debug, info, warning or error.",
    "claude.approval_timeout": "Seconds a tool call waits for `forge approve|deny` before it is "
    "denied.",
    "claude.permission_mode": "Permission mode of claude tasks that set none: default, "
    "acceptEdits, plan, bypassPermissions or dontAsk.",
    "claude.allowed_tools": "Tool rules allowed without asking: Bash, Edit, Bash(git *), "
    "mcp__server__tool.",
    "claude.disallowed_tools": "Tool rules always refused; they win over allowed_tools.",
    "claude.add_dirs": "Directories besides the task's worktree that tools may use.",
    "claude.sandbox": "This machine is a disposable sandbox: bypassPermissions tasks get "
    "IS_SANDBOX=1, which Claude Code needs to run them as root.",
    "isolation.sandbox": "Run shell and claude tasks in the bubblewrap sandbox unless they say "
    "--no-sandbox.",
    "isolation.network": "Network of sandboxed tasks: on, off (loopback only) or api (only the "
    "model API's host and port, relayed: ANTHROPIC_BASE_URL or api.anthropic.com:443).",
    "isolation.memory": "Memory limit of each attempt's process tree, e.g. 512M or 2G (unset: "
    "none).",
    "isolation.cpus": "CPU share of each attempt, in cores, e.g. 0.5 (unset: none).",
    "isolation.pids": "Most processes and threads alive at once in an attempt (unset: none).",
    "metrics.port": "Serve /metrics, /healthz and /readyz from the daemon on this port "
    "(unset: no port is opened).",
    "metrics.host": "Address the metrics port is bound to (127.0.0.1: this machine only).",
    "logging.format": "auto (console on a TTY, JSON lines otherwise), console or json.",
    "container.engine": "Engine of the container runtime: podman, docker, or auto (the first "
    "of them installed).",
    "container.image": "Image of container tasks that name none (never pulled: it must be on "
    "the machine).",
    "container.run_args": "Extra arguments of the engine's run command, before the image.",
}


def _toml_value(value: Any) -> str:
    if isinstance(value, bool):
        return "true" if value else "false"
    if isinstance(value, str):
        return msgspec.json.encode(value).decode()
    if isinstance(value, list):
        return "[" + ", ".join(_toml_value(v) for v in value) + "]"
    return repr(value)


def default_config_text() -> str:
    """A commented settings file holding every default, for `forge config init`."""
    lines = [
        "# Forge settings. Precedence: this file < FORGE_<SECTION>_<FIELD> variables < flags.",
        "# `forge config validate` checks this file; `forge config show` prints the result.",
    ]
    for section, cls in SECTIONS.items():
        lines += ["", f"[{section}]"]
        defaults = msgspec.structs.asdict(cls())
        for name, value in defaults.items():
            lines.append(f"# {FIELD_DOCS.get(f'{section}.{name}', name)}")
            if value is None:
                lines.append(f"# {name} = ")
            else:
                lines.append(f"{name} = {_toml_value(value)}")
    return "\n".join(lines) + "\n"
