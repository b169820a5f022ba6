"""Crash recovery: what a starting orchestrator does with the state an earlier daemon left.

The state comes from replay (snapshot + tail). An attempt that was running is re-adopted if its
agent process still lives (same PID *and* start time); otherwise the attempt is recorded as
lost and the task is retried; one whose start was never recorded but whose agent is found
by its log file gets its `task.started` first. Agents of the old daemon without a live attempt
are recorded as terminated. Another running node's attempts and agents are left alone; those
of a node that no longer runs are ended as lost (see `actors/nodes.py`). Gaps a crash can
leave between two appends are closed: a transient failure with no retry decision gets one, a
pending task whose dependencies are done is queued, and due retries get their timers again.
"""

from __future__ import annotations

from collections.abc import Mapping

from actors.agents import Agents
from actors.endings import Endings
from actors.ledger import Ledger
from actors.messages import AdoptAttempt, AttemptEnded, Timer
from actors.nodes import requeue_orphans, runs
from actors.policy import BREAKER_FAILURES, OrchestratorConfig, build_spec, retried
from actors.runtime import Outcome, RuntimeAdapter
from events import types as t
from events.task_index import manual_retry

__all__ = ["recover"]


def recover(
    ledger: Ledger,
    agents: Agents,
    endings: Endings,
    runtimes: Mapping[str, RuntimeAdapter],
    config: OrchestratorConfig,
) -> None:
    """Take over what the previous daemon left (run once, as the orchestrator starts)."""
    now = ledger.now()
    state = ledger.state
    adopting: set[str] = set()
    me = config.node_id
    for task in list(state.tasks.values()):
        if task.state not in ("assigned", "running") or task.agent_id is None:
            continue
        if task.node_id not in (None, me) and task.node_id in state.nodes:
            continue  # another node's: it runs it, or `requeue_orphans` ends it below
        agent = state.agents.get(task.agent_id)
        runtime = runtimes.get(task.definition.runtime)
        spec = build_spec(task, task.attempt, config)
        epoch = task.epoch or 0
        if agent is None or runtime is None:
            continue
        adopting.add(task.agent_id)
        agents.spawn(agent.runtime, list(agent.tags), agent_id=task.agent_id)
        if task.state == "running" and task.pid is not None and task.create_time is not None:
            agents.tell(
                task.agent_id,
                AdoptAttempt(spec=spec, epoch=epoch, pid=task.pid, create_time=task.create_time),
            )
        elif (found := runtime.locate(spec)) is not None:  # started, never recorded
            pid, create_time = found  # create time 0.0: it ended while nobody watched
            started = t.TaskStarted(
                at=now,
                task_id=task.task_id,
                attempt=task.attempt,
                agent_id=task.agent_id,
                pid=pid,
                create_time=create_time or None,
                log_path=spec.log_path,
            )
            ledger.append([started])  # the history reads claim, started, outcome
            agents.tell(
                task.agent_id,
                AdoptAttempt(spec=spec, epoch=epoch, pid=found[0], create_time=found[1]),
            )
        else:  # assigned, but its start was never recorded: the attempt is lost
            agents.post(
                AttemptEnded(
                    task.agent_id,
                    task.task_id,
                    task.attempt,
                    epoch,
                    Outcome(
                        ok=False,
                        failure="lost",
                        reason="the daemon died before the attempt was recorded as started",
                    ),
                )
            )
    stale = [
        t.AgentTerminated(at=now, agent_id=agent.agent_id, reason="daemon restarted")
        for agent in state.agents.values()
        if agent.status != "terminated"
        and agent.agent_id not in adopting
        and (agent.node_id in ("", me) or not runs(state, agent.node_id))
    ]
    ledger.append(stale)
    requeue_orphans(ledger, agents, me, "node {node} stopped running it")

    for task in list(state.tasks.values()):
        if task.state == "retry_wait":
            delay = max(0.0, (task.not_before or now) - now)
            agents.later(delay, Timer(kind="retry", key=task.task_id))
        elif task.state == "failed" and retried(task, task.last_failure):
            # the crash came between the failure and the decision about it
            if task.last_failure in BREAKER_FAILURES:
                ledger.append([t.TaskQueued(at=now, task_id=task.task_id, reason="requeued")])
            else:
                endings.after_failure(task)
        elif task.state == "pending" and not state.unmet_dependencies(task.task_id):
            ledger.append([t.TaskQueued(at=now, task_id=task.task_id, reason="dependencies_met")])
        elif task.state in ("failed", "dead_lettered", "cancelled", "completed"):
            if task.state == "completed":
                ready = state.ready_dependants(task.task_id)
                ledger.append(
                    [t.TaskQueued(at=now, task_id=d, reason="dependencies_met") for d in ready]
                )
            else:
                endings.fail_dependants(task)
    for task_id in list(state.cancel_requests):
        endings.cancel(task_id)
    for task_id in list(state.retry_requests):
        if state.task_state(task_id) in ("failed", "dead_lettered", "cancelled"):
            ledger.append([manual_retry(ledger.store, state, task_id, now)])
