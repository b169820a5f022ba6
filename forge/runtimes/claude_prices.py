"""What Claude models cost: Anthropic's published list prices per million tokens, by model.

Used only for the *live* estimate of an attempt's spend while it runs (`claude_usage`); the
CLI's own `total_cost_usd` replaces the estimate when the attempt's `result` line arrives.

Prices are Anthropic's list prices in USD per million tokens (platform.claude.com pricing,
as published for these models): base input, output, cache writes (5-minute TTL: 1.25 times input;
1-hour TTL: 2 times input) and cache reads (a tenth of input). Long-context (> 200k input) premiums,
batch discounts and regional endpoints are not modelled.

A model that is not in the table has no price: `price_for` returns None and the caller says so
rather than guessing from a similar name (a new model may well be priced differently: Opus 4.5
costs a third of Opus 4.1).
"""

from __future__ import annotations

import re

import msgspec

__all__ = ["PRICES", "Price", "model_family", "price_for"]


class Price(msgspec.Struct, frozen=True, kw_only=True):
    """USD per million tokens."""

    input: float
    output: float
    cache_write_5m: float
    cache_write_1h: float
    cache_read: float

    def cost(
        self,
        input_tokens: int,
        output_tokens: int,
        cache_write_tokens: int = 0,
        cache_read_tokens: int = 0,
        cache_write_1h_tokens: int = 0,
    ) -> float:
        """USD for these token counts (`cache_write_tokens` at the 5-minute rate, those of
        them given again in `cache_write_1h_tokens` at the 1-hour rate)."""
        five_minutes = max(0, cache_write_tokens - cache_write_1h_tokens)
        return (
            input_tokens * self.input
            + output_tokens * self.output
            + five_minutes * self.cache_write_5m
            + cache_write_1h_tokens * self.cache_write_1h
            + cache_read_tokens * self.cache_read
        ) / 1_000_000


def _tier(input_price: float, output_price: float) -> Price:
    return Price(
        input=input_price,
        output=output_price,
        cache_write_5m=input_price * 1.25,
        cache_write_1h=input_price * 2,
        cache_read=input_price / 10,
    )


_OPUS_4_5 = _tier(5.0, 25.0)  # Opus 4.5 and later
_OPUS = _tier(15.0, 75.0)  # Opus 4.1, 4 and 3
_SONNET = _tier(3.0, 15.0)
_HAIKU_4_5 = _tier(1.0, 5.0)
_HAIKU_3_5 = _tier(0.8, 4.0)
_HAIKU_3 = _tier(0.25, 1.25)

PRICES: dict[str, Price] = {
    "opus-4-6": _OPUS_4_5,
    "opus-4-5": _OPUS_4_5,
    "opus-4-1": _OPUS,
    "opus-4": _OPUS,
    "3-opus": _OPUS,
    "sonnet-4-6": _SONNET,
    "sonnet-4-5": _SONNET,
    "sonnet-4": _SONNET,
    "3-7-sonnet": _SONNET,
    "3-5-sonnet": _SONNET,
    "haiku-4-5": _HAIKU_4_5,
    "3-5-haiku": _HAIKU_3_5,
    "3-haiku": _HAIKU_3,
}
"""Model family (as `model_family` names it) → price."""

_PROVIDER_PREFIX = re.compile(r"^(?:[a-z]{2,4}\.)?(?:anthropic\.)?(?:claude-)?")
_SUFFIXES = re.compile(r"(?:\[1m\])?(?:-v\d+(?::\d+)?)?(?:[@-]\d{8})?(?:-v\d+(?::\d+)?)?$")


def model_family(model: str) -> str:
    """The family a model id names: `claude-sonnet-4-5-20250929` → `sonnet-4-5`; Bedrock's
    `us.anthropic.claude-opus-4-1-20250805-v1:0` and Vertex's `claude-3-5-haiku@20241022`
    likewise; aliases (`claude-sonnet-4-5`) name themselves."""
    name = model.strip().lower()
    name = _PROVIDER_PREFIX.sub("", name, count=1)
    return _SUFFIXES.sub("", name, count=1)


def price_for(model: str | None) -> Price | None:
    """The price of `model`, or None when it is not in the table (never a guess)."""
    if not model:
        return None
    return PRICES.get(model_family(model))
