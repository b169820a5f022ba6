"""The approval handlers of the projection: pending while unanswered, first answer wins,
`--always` rules, and requests of an attempt that ended."""

from __future__ import annotations

from events import types as t
from events.approvals import ApprovalRule, match_key, rule_allows, summarize
from events.projection import apply_all
from events.state import FleetState

BASH = {"command": "make deploy", "description": "deploy"}


def _running(task_id: str = "t1") -> list[t.Event]:
    return [
        t.TaskSubmitted(at=1.0, task_id=task_id, spec=t.TaskDefinition(runtime="claude")),
        t.TaskAssigned(at=2.0, task_id=task_id, attempt=1, agent_id="a1", epoch=1),
        t.TaskStarted(at=3.0, task_id=task_id, attempt=1, agent_id="a1"),
    ]


def _request(approval_id: str = "ap-1", at: float = 4.0, **fields: object) -> t.ApprovalRequested:
    values: dict[str, object] = {
        "task_id": "t1",
        "attempt": 1,
        "tool": "Bash",
        "summary": summarize("Bash", BASH),
        "match": match_key("Bash", BASH),
        "timeout": 600.0,
        "expires_at": at + 600.0,
    }
    values.update(fields)
    return t.ApprovalRequested(at=at, approval_id=approval_id, **values)  # type: ignore[arg-type]


def _answer(approval_id: str = "ap-1", **fields: object) -> t.ApprovalAnswered:
    values: dict[str, object] = {"task_id": "t1", "allowed": True}
    values.update(fields)
    return t.ApprovalAnswered(at=5.0, approval_id=approval_id, **values)  # type: ignore[arg-type]


def test_a_request_waits_and_the_task_stays_running() -> None:
    state = apply_all(FleetState(), [*_running(), _request()])
    task = state.tasks["t1"]
    assert (task.state, task.pending_approvals) == ("running", ("ap-1",))
    approval = state.approvals["ap-1"]
    assert (approval.status, approval.summary, approval.expires_at) == (
        "pending",
        "make deploy",
        604.0,
    )


def test_the_first_answer_wins() -> None:
    timeout = _answer(allowed=False, by="timeout", reason="no answer within 600 s")
    state = apply_all(FleetState(), [*_running(), _request(), timeout, _answer()])
    approval = state.approvals["ap-1"]
    assert (approval.status, approval.by) == ("denied", "timeout")
    assert state.tasks["t1"].pending_approvals == ()
    assert state.anomaly_kinds == {"approval.answered": 1}


def test_always_records_a_rule_for_the_task() -> None:
    state = apply_all(FleetState(), [*_running(), _request(), _answer(always=True)])
    (rule,) = state.tasks["t1"].approval_rules
    assert rule == ApprovalRule(tool="Bash", match=match_key("Bash", BASH), summary="make deploy")
    assert rule_allows([rule], "Bash", {"command": "make deploy"})
    assert not rule_allows([rule], "Bash", {"command": "make deploy --force"})
    assert not rule_allows([rule], "Write", {"file_path": "make deploy"})


def test_a_denial_records_no_rule_even_with_always() -> None:
    state = apply_all(FleetState(), [*_running(), _request(), _answer(allowed=False, always=True)])
    assert state.tasks["t1"].approval_rules == ()
    assert state.approvals["ap-1"].always is False


def test_requests_of_an_attempt_that_ended_are_abandoned() -> None:
    failed = t.TaskFailed(at=6.0, task_id="t1", attempt=1, failure="crash")
    state = apply_all(FleetState(), [*_running(), _request(), failed, _answer()])
    assert state.approvals["ap-1"].status == "abandoned"
    assert state.tasks["t1"].pending_approvals == ()
    assert state.anomaly_kinds == {"approval.answered": 1}


def test_a_request_for_an_unknown_or_finished_task_changes_nothing() -> None:
    cancelled = t.TaskCancelled(at=6.0, task_id="t1")
    state = apply_all(FleetState(), [_request(task_id="nope")])
    assert state.approvals == {}
    state = apply_all(FleetState(), [*_running(), cancelled, _request()])
    assert state.approvals == {}
    assert state.anomaly_kinds == {"approval.requested": 1}


def test_summaries_are_short_redacted_and_never_a_whole_file() -> None:
    secret = "sk-ant-api03-" + "x" * 40
    assert secret not in summarize("Bash", {"command": f"curl -H 'x-api-key: {secret}' api"})
    written = summarize("Write", {"file_path": "/w/notes.txt", "content": "line\n" * 10_000})
    assert written == "/w/notes.txt"
    assert len(summarize("Bash", {"command": "echo " + "a" * 5000})) <= 200
    assert summarize("mcp__x__y", {"b": 1, "a": 2}) == "{a, b}"
