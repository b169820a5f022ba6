"""An attempt's spend while it runs: tokens from each `assistant` message, priced by model.

Claude Code writes one `assistant` line per content block, and every line of one API message
carries the same `message.id` and the same `usage`, so each message id is counted once (its
largest figures kept, should a later line of it carry more). Synthetic messages (`<synthetic>`,
an API error the CLI reports as a message) carry zeros and cost nothing.

The figures are an estimate: on these lines `usage.output_tokens` is a placeholder (usually 1;
the real count arrives only in the API's final event, which `-p` does not print), so output is
undercounted until the `result` line, whose `total_cost_usd` and per-model totals replace the
estimate. Input, cache writes and cache reads are exact, and they are most of an agent's cost.

`UsageThrottle` rate-limits the cumulative `UsageNotice`s like progress: at most one per
`interval` seconds, or at once when the cost has grown by `step` USD since the last one sent;
a held-back figure is released by `flush` (the attempt's end).
"""

from __future__ import annotations

import time
from collections.abc import Callable
from typing import Any

import msgspec

from actors.runtime import UsageNotice
from forge.runtimes.claude_prices import price_for

__all__ = ["UsageMeter", "UsageThrottle"]

_FIELDS = (
    "input_tokens",
    "output_tokens",
    "cache_creation_input_tokens",
    "cache_read_input_tokens",
    "ephemeral_1h_input_tokens",
)


class _Usage(msgspec.Struct, kw_only=True):
    input_tokens: Any = 0
    output_tokens: Any = 0
    cache_creation_input_tokens: Any = 0
    cache_read_input_tokens: Any = 0
    cache_creation: dict[str, Any] | None = None


class _Message(msgspec.Struct, kw_only=True):
    id: Any = None
    model: Any = None
    usage: _Usage | None = None


_decoder = msgspec.json.Decoder(_Message)


def _count(value: Any) -> int:
    ok = isinstance(value, int) and not isinstance(value, bool) and value > 0
    return value if ok else 0


class UsageMeter:
    """Cumulative tokens and estimated cost of one attempt, from its `assistant` messages."""

    def __init__(self) -> None:
        self._messages: dict[str, tuple[str, tuple[int, ...]]] = {}  # id -> (model, counts)
        self.unpriced: list[str] = []  # models seen with tokens and no known price

    def add(self, raw: msgspec.Raw | bytes | str) -> str | None:
        """Count one `assistant` line's `message`; returns a model's name the first time it
        is seen with tokens but no price (the caller says so), else None."""
        if not raw:
            return None
        try:
            message = _decoder.decode(raw)
        except (msgspec.DecodeError, msgspec.ValidationError):
            return None
        usage = message.usage
        if usage is None or not isinstance(message.id, str) or not message.id:
            return None
        one_hour = (usage.cache_creation or {}).get("ephemeral_1h_input_tokens")
        counts: tuple[int, ...] = (
            _count(usage.input_tokens),
            _count(usage.output_tokens),
            _count(usage.cache_creation_input_tokens),
            _count(usage.cache_read_input_tokens),
            _count(one_hour),
        )
        if not any(counts):
            return None
        model = message.model if isinstance(message.model, str) else ""
        seen = self._messages.get(message.id)
        if seen is not None:
            counts = tuple(max(a, b) for a, b in zip(seen[1], counts, strict=True))
        self._messages[message.id] = (model, counts)
        if price_for(model) is None and model not in self.unpriced:
            self.unpriced.append(model)
            return model or "(unnamed)"
        return None

    @property
    def messages(self) -> int:
        return len(self._messages)

    def totals(self) -> UsageNotice:
        """Tokens (uncached input, output) and the estimated USD so far (unpriced models count
        their tokens and no cost)."""
        input_tokens = output_tokens = 0
        cost = 0.0
        for model, counts in self._messages.values():
            fresh, out, write, read, write_1h = counts
            input_tokens += fresh
            output_tokens += out
            price = price_for(model)
            if price is not None:
                cost += price.cost(fresh, out, write, read, write_1h)
        return UsageNotice(input_tokens=input_tokens, output_tokens=output_tokens, cost_usd=cost)

    def final(self, input_tokens: int, output_tokens: int, cost_usd: float) -> UsageNotice:
        """The result line's totals, or the estimate when the result carries none (a crashed
        session's result may hold zeroes)."""
        if cost_usd > 0 or not self._messages:
            return UsageNotice(
                input_tokens=input_tokens, output_tokens=output_tokens, cost_usd=cost_usd
            )
        return self.totals()


class UsageThrottle:
    """At most one usage notice per `interval` seconds, or at once on a `step` USD rise."""

    def __init__(
        self,
        interval: float = 2.0,
        step: float = 0.05,
        clock: Callable[[], float] = time.monotonic,
    ) -> None:
        self.interval = interval
        self.step = step
        self._clock = clock
        self._last_at: float | None = None
        self._last_cost = 0.0
        self._pending: UsageNotice | None = None

    def offer(self, usage: UsageNotice) -> list[UsageNotice]:
        """Hand in the latest cumulative figures; return what may go out now."""
        self._pending = usage
        now = self._clock()
        due = self._last_at is None or now - self._last_at >= self.interval
        if not due and usage.cost_usd - self._last_cost < self.step:
            return []
        return self._send(now)

    def flush(self) -> list[UsageNotice]:
        """Release the held-back figures, whatever the time."""
        return self._send(self._clock()) if self._pending is not None else []

    def drop(self) -> None:
        """Forget the held-back figures (the final ones supersede them)."""
        self._pending = None

    def _send(self, now: float) -> list[UsageNotice]:
        pending, self._pending = self._pending, None
        if pending is None:
            return []
        self._last_at, self._last_cost = now, pending.cost_usd
        return [pending]
