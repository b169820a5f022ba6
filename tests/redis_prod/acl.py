"""The least privileges Forge needs on a Redis it shares: one `ACL SETUSER` line.

docs/redis.md shows `acl_setuser("forge", "<password>", "forge")`; tests/redis_prod checks that
Forge works under it, fails clearly with one privilege fewer, and calls nothing outside it.
"""

from __future__ import annotations

from events.keys import PREFIX

__all__ = ["COMMANDS", "acl_setuser", "key_pattern"]

COMMANDS = (
    # connection (AUTH is always allowed; SELECT for a database other than 0, WAIT for
    # redis.wait_replicas)
    "ping",
    "select",
    "wait",
    # the log's Lua scripts, and the commands they call
    "evalsha",
    "script|load",
    "xadd",
    "xrange",
    "xrevrange",
    "xread",
    "xlen",
    "xtrim",
    # consumer groups (`forge events consume`)
    "xreadgroup",
    "xgroup|create",
    "xautoclaim",
    "xpending",
    "xack",
    # the derived index, snapshots, heartbeats, leases
    "hget",
    "hset",
    "hsetnx",
    "hgetall",
    "hmget",
    "hvals",
    "hdel",
    "hexists",
    "get",
    "set",
    "mget",
    "del",
    "pexpire",
    "zadd",
    "zrange",
    "zrem",
    "sadd",
    "smembers",
    "scan",
    "multi",
    "exec",
)


def key_pattern(namespace: str) -> str:
    """Every key of one namespace (events/keys.py: `forge:{namespace}:…`)."""
    return f"{PREFIX}:{{{namespace}}}:*"


def acl_setuser(user: str, password: str, namespace: str, without: str = "") -> str:
    """The ACL SETUSER line of a user that may do what Forge does on `namespace`, and no more
    (`without`: one command left out, to see it fail)."""
    allowed = " ".join(f"+{c}" for c in COMMANDS if c != without)
    return f"ACL SETUSER {user} reset on >{password} ~{key_pattern(namespace)} {allowed}"
