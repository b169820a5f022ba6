"""Functions run in child processes by the concurrency and consumer tests (spawn-safe)."""

from __future__ import annotations

import os
import signal

import redis

from events import EventStore, GroupConsumer, TaskAssigned, TaskConflict


def claim_all(socket: str, namespace: str, worker: int, task_ids: list[str]) -> list[str]:
    """Try to claim every task; return those this worker won."""
    store = EventStore(redis.Redis(unix_socket_path=socket), namespace)
    won = []
    for task_id in task_ids:
        event = TaskAssigned(at=1.0, task_id=task_id, attempt=1, agent_id=f"w{worker}", epoch=1)
        try:
            store.claim(task_id, event)
        except TaskConflict:
            continue
        won.append(task_id)
    return won


def consume_then_die(socket: str, namespace: str, acks: int) -> None:
    """Read a batch, acknowledge `acks` of it, then die without cleaning up."""
    store = EventStore(redis.Redis(unix_socket_path=socket), namespace)
    consumer = GroupConsumer(store, "g", "doomed", count=10)
    batch = consumer.read(block_ms=1000)
    consumer.ack(*(d.id for d in batch[:acks]))
    os.kill(os.getpid(), signal.SIGKILL)
