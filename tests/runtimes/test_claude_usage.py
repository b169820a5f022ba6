"""The live spend estimate: message ids counted once, prices by model, unknown models said so,
and the usage throttle."""

from __future__ import annotations

import json

import pytest

from actors.runtime import ProgressNotice, UsageNotice
from forge.runtimes.claude_prices import model_family, price_for
from forge.runtimes.claude_stream import StreamParser
from forge.runtimes.claude_usage import UsageThrottle


def _assistant(message_id: str, model: str, input_tokens: int, block: str = "hi") -> str:
    usage = {"input_tokens": input_tokens, "output_tokens": 1, "cache_read_input_tokens": 1000}
    message = {
        "id": message_id,
        "model": model,
        "content": [{"type": "text", "text": block}],
        "usage": usage,
    }
    return json.dumps({"type": "assistant", "message": message})


def test_each_message_id_is_counted_once_and_priced_by_its_model() -> None:
    parser = StreamParser(usage_throttle=UsageThrottle(interval=0.0))
    model = "claude-sonnet-4-5-20250929"
    for line in (_assistant("m1", model, 100), _assistant("m1", model, 100, "again")):
        parser.feed(line)
    parser.feed(_assistant("m2", model, 200))
    usage = parser.meter.totals()
    assert (usage.input_tokens, usage.output_tokens) == (300, 2)
    assert usage.cost_usd == pytest.approx((300 * 3 + 2 * 15 + 2000 * 0.3) / 1e6)


def test_an_unknown_model_is_said_so_and_not_guessed() -> None:
    parser = StreamParser(usage_throttle=UsageThrottle(interval=0.0))
    notices = parser.feed(_assistant("m1", "claude-opus-9-9", 500))
    said = [n.summary for n in notices if isinstance(n, ProgressNotice)]
    assert any("no known price for model claude-opus-9-9" in s for s in said)
    (usage,) = [n for n in notices if isinstance(n, UsageNotice)]
    assert (usage.input_tokens, usage.cost_usd) == (500, 0.0)
    assert price_for("claude-opus-9-9") is None
    assert model_family("us.anthropic.claude-opus-4-1-20250805-v1:0") == "opus-4-1"
    assert price_for("claude-opus-4-5") != price_for("claude-opus-4-1")


def test_usage_notices_are_rate_limited_with_a_cost_step() -> None:
    now = [0.0]
    throttle = UsageThrottle(interval=5.0, step=0.05, clock=lambda: now[0])
    assert throttle.offer(UsageNotice(cost_usd=0.01))  # the first goes out
    now[0] = 1.0
    assert throttle.offer(UsageNotice(cost_usd=0.02)) == []  # held back
    assert throttle.offer(UsageNotice(cost_usd=0.07)) == [UsageNotice(cost_usd=0.07)]  # a step
    assert throttle.offer(UsageNotice(cost_usd=0.08)) == []
    assert throttle.flush() == [UsageNotice(cost_usd=0.08)]  # the attempt's end releases it
