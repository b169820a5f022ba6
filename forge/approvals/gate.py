"""The approval gate: one tool call in, allow or deny out, every decision in the log.

`ApprovalGate.decide(tool, input)` is what the approval server runs for each permission prompt
of its agent:

1. a rule recorded by `forge approve --always` for this task (given at start, or answered in
   the log since) allows the call at once;
2. otherwise it appends `approval.requested` and waits, blocked in `XREAD` on the log through
   the store (no polling, no daemon involved), for the first `approval.answered` of that id;
3. when nobody answers within the timeout, it appends a denial `by="timeout"`, then reads the
   log again: the first answer recorded wins, whoever wrote it.

If the log cannot be reached the gate retries until the deadline and then denies the call
(`unavailable`), so an agent never runs a command nobody allowed.
"""

from __future__ import annotations

import contextlib
import threading
import time
import uuid
from collections.abc import Callable, Iterable, Mapping
from typing import Any, NamedTuple

from events.approvals import ApprovalRule, match_key, rule_allows, summarize
from events.errors import StoreError
from events.store import EventStore
from events.types import ApprovalAnswered, ApprovalRequested

__all__ = ["ApprovalGate", "Decision", "new_approval_id"]

_BLOCK_MS = 500  # one XREAD's longest block: how late a timeout may be noticed
_RETRY_SECONDS = 1.0  # between two tries to reach a log that did not answer


class Decision(NamedTuple):
    """What Claude Code is told: allow, or deny with `message` (which the model reads)."""

    allowed: bool
    message: str = ""
    approval_id: str | None = None


def new_approval_id() -> str:
    """A short id people can type (`forge approve ap-1a2b3c4d`)."""
    return "ap-" + uuid.uuid4().hex[:8]


class ApprovalGate:
    """Decides the tool calls of one attempt of one task (thread-safe: Claude Code may ask
    about several calls at once)."""

    def __init__(
        self,
        store: Callable[[], EventStore],
        task_id: str,
        attempt: int,
        timeout: float,
        rules: Iterable[ApprovalRule] = (),
        clock: Callable[[], float] = time.time,
    ) -> None:
        self._store_factory = store
        self._store: EventStore | None = None
        self.task_id = task_id
        self.attempt = attempt
        self.timeout = timeout
        self._rules = list(rules)
        self._clock = clock
        self._lock = threading.Lock()
        self._seen: str | None = None  # the log position up to which rules were learned
        self._requests: dict[str, ApprovalRequested] = {}  # of this task, seen since

    # -- the decision --------------------------------------------------------------------

    def decide(self, tool: str, tool_input: Mapping[str, Any]) -> Decision:
        deadline = time.monotonic() + self.timeout
        with contextlib.suppress(StoreError):  # the rules known so far still apply
            self._learn_rules()
        if rule_allows(self.rules(), tool, tool_input):
            return Decision(True)
        approval_id = new_approval_id()
        now = self._clock()
        request = ApprovalRequested(
            at=now,
            approval_id=approval_id,
            task_id=self.task_id,
            attempt=self.attempt,
            tool=tool,
            summary=summarize(tool, tool_input),
            match=match_key(tool, tool_input),
            timeout=self.timeout,
            expires_at=now + self.timeout,
        )
        position = self._retry(lambda store: store.append(request), deadline)
        if position is None:
            return Decision(False, "Forge could not record the approval request (log unreachable)")
        answer = self._wait(approval_id, position, deadline)
        if answer is None:
            answer = self._time_out(approval_id, position)
        if answer is None:
            return Decision(False, "Forge could not record the approval (log unreachable)")
        if answer.always and answer.allowed:
            self._add_rule(ApprovalRule(tool=tool, match=request.match, summary=request.summary))
        return _decision(answer, self.timeout)

    def start(self) -> None:
        """Note where the log ends now: the rules given at start are those recorded until here
        (later ones are learned from the log). Without a log, the first decision does it."""
        with contextlib.suppress(StoreError):
            self._learn_rules()

    def rules(self) -> list[ApprovalRule]:
        with self._lock:
            return list(self._rules)

    # -- the log -------------------------------------------------------------------------

    def _get_store(self) -> EventStore:
        with self._lock:
            if self._store is None:
                self._store = self._store_factory()
            return self._store

    def _retry(self, action: Callable[[EventStore], str], deadline: float) -> str | None:
        while True:
            try:
                return action(self._get_store())
            except StoreError:
                if time.monotonic() + _RETRY_SECONDS >= deadline:
                    return None
                threading.Event().wait(_RETRY_SECONDS)

    def _learn_rules(self) -> None:
        """Fold the `--always` answers about this task recorded since the last look."""
        store = self._get_store()
        with self._lock:
            start = self._seen
        if start is None:  # the rules given at start are those of the log until now
            with self._lock:
                self._seen = store.last_id() or "0-0"
            return
        last = start
        for page in store.pages(f"({start}"):
            for entry_id, _, event in page:
                last = entry_id
                self._note(event)
        with self._lock:
            self._seen = last

    def _note(self, event: object) -> None:
        if isinstance(event, ApprovalRequested) and event.task_id == self.task_id:
            with self._lock:
                self._requests[event.approval_id] = event
        elif (
            isinstance(event, ApprovalAnswered)
            and event.task_id == self.task_id
            and event.always
            and event.allowed
        ):
            with self._lock:
                request = self._requests.get(event.approval_id)
            if request is not None:
                self._add_rule(
                    ApprovalRule(tool=request.tool, match=request.match, summary=request.summary)
                )

    def _add_rule(self, rule: ApprovalRule) -> None:
        with self._lock:
            if rule not in self._rules:
                self._rules.append(rule)

    def _wait(self, approval_id: str, after: str, deadline: float) -> ApprovalAnswered | None:
        """The first answer to `approval_id` after `after`, or None at the deadline."""
        stop = threading.Event()
        timer = threading.Timer(max(0.0, deadline - time.monotonic()), stop.set)
        timer.daemon = True
        timer.start()
        try:
            while not stop.is_set():
                try:
                    for entry in self._get_store().tail(after, _BLOCK_MS, stop=stop):
                        after = entry.id
                        event = entry.event
                        if isinstance(event, ApprovalAnswered) and event.approval_id == approval_id:
                            return event
                except StoreError:
                    stop.wait(_RETRY_SECONDS)
        finally:
            timer.cancel()
        return None

    def _time_out(self, approval_id: str, position: str) -> ApprovalAnswered | None:
        """Record the denial of an unanswered request, then return the first answer in the
        log (a person's answer that came in meanwhile wins over the timeout)."""
        denial = ApprovalAnswered(
            at=self._clock(),
            approval_id=approval_id,
            task_id=self.task_id,
            allowed=False,
            by="timeout",
            reason=f"no answer within {self.timeout:g} s",
        )
        grace = time.monotonic() + max(self.timeout, 5.0)
        if self._retry(lambda store: store.append(denial), grace) is None:
            return None
        for entry in self._get_store().read_from(position):
            event = entry.event
            if isinstance(event, ApprovalAnswered) and event.approval_id == approval_id:
                return event
        return denial


def _decision(answer: ApprovalAnswered, timeout: float) -> Decision:
    if answer.allowed:
        return Decision(True, approval_id=answer.approval_id)
    if answer.by == "timeout":
        message = f"Denied: nobody answered approval {answer.approval_id} within {timeout:g} s."
    else:
        message = f"Denied by the operator (approval {answer.approval_id})"
        if answer.reason:
            message += f": {answer.reason}"
    return Decision(False, message, answer.approval_id)
