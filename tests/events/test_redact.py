"""Redaction: secret values and shapes are masked; long unbroken text does not stall it."""

from __future__ import annotations

import pytest

from events.redact import MASK, redact, redact_value, register_secrets


def test_known_values_and_shapes_are_masked() -> None:
    register_secrets(["registered-secret-1"])
    text = redact(
        "x registered-secret-1 redis://user:pw-123@host password=hunter22 "
        "ANTHROPIC_API_KEY=sk-ant-api03-abcdefgh input_tokens=12"
    )
    for secret in ("registered-secret-1", "pw-123", "hunter22", "sk-ant-api03-abcdefgh"):
        assert secret not in text
    assert "user:***@host" in text
    assert "input_tokens=12" in text


def test_secret_named_keys_mask_whole_values() -> None:
    out = redact_value({"api_key": "abcdef", "output_tokens": 3, "nested": [{"token": "t0ken!"}]})
    assert out == {"api_key": MASK, "output_tokens": 3, "nested": [{"token": MASK}]}


@pytest.mark.timeout(20)
def test_long_unbroken_runs_are_handled() -> None:
    # a stream-json line can hold megabytes of base64; redaction must stay linear in it
    blob = "A" * 2_000_000
    assert redact(blob) == blob
    secret_at_end = blob + " password=s3cr3t-value"
    assert redact(secret_at_end).endswith("password=***")
