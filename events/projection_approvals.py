"""`apply` handlers of approvals: requests, answers, and the rules `--always` records.

Pure like the rest of the projection. A request is kept in `state.approvals` and listed in its
task's `pending_approvals` until the first answer (later answers are anomalies) or until its
attempt ends (`abandon_approvals`, called by the task handlers): the task's state stays
`running` meanwhile. An answer with `always` adds an `ApprovalRule` to the task, which holds for
the rest of the task, its later attempts included.
"""

from __future__ import annotations

from events import types as t
from events.approvals import ApprovalRule, ApprovalState
from events.projection_fleet import anomaly
from events.state import FleetState, TaskState

__all__ = ["abandon_approvals", "approval_answered", "approval_requested"]


def approval_requested(state: FleetState, e: t.ApprovalRequested) -> None:
    task = state.tasks.get(e.task_id)
    if task is None or e.approval_id in state.approvals or task.terminal:
        anomaly(state, e)
        return
    state.approvals[e.approval_id] = ApprovalState(
        approval_id=e.approval_id,
        task_id=e.task_id,
        attempt=e.attempt,
        tool=e.tool,
        summary=e.summary,
        match=e.match,
        requested_at=e.at,
        expires_at=e.expires_at,
    )
    task.pending_approvals = (*task.pending_approvals, e.approval_id)


def approval_answered(state: FleetState, e: t.ApprovalAnswered) -> None:
    approval = state.approvals.get(e.approval_id)
    if approval is None or approval.status != "pending" or approval.task_id != e.task_id:
        anomaly(state, e)
        return
    approval.status = "allowed" if e.allowed else "denied"
    approval.answered_at = e.at
    approval.by = e.by
    approval.always = e.always and e.allowed
    approval.reason = e.reason or None
    task = state.tasks.get(e.task_id)
    if task is None:
        return
    if e.approval_id in task.pending_approvals:
        task.pending_approvals = tuple(a for a in task.pending_approvals if a != e.approval_id)
    if approval.always:
        rule = ApprovalRule(tool=approval.tool, match=approval.match, summary=approval.summary)
        if rule not in task.approval_rules:
            task.approval_rules = (*task.approval_rules, rule)


def abandon_approvals(state: FleetState, task: TaskState, at: float) -> None:
    """The task's attempt ended: nothing waits for its pending requests any more."""
    for approval_id in task.pending_approvals:
        approval = state.approvals.get(approval_id)
        if approval is not None and approval.status == "pending":
            approval.status = "abandoned"
            approval.answered_at = at
    task.pending_approvals = ()
