"""The shim masks secret shapes, not only the values of secret variables, before the disk."""

from __future__ import annotations

import re

from events import redact
from forge.runtimes import shim
from tests.runtimes.conftest import WAIT, Collector, Harness

KEY = "sk-ant-api03-AAAAAAAAAAAAAAAAAAAA"


def test_the_shims_secret_shapes_are_those_of_events_redact() -> None:
    pairs = [
        (shim._URL_USERINFO, redact._URL_USERINFO),
        (shim._KEY_SHAPES, redact._KEY_SHAPES),
        (shim._ASSIGNMENT, redact._ASSIGNMENT),
    ]
    for ours, theirs in pairs:
        assert ours.pattern.decode() == theirs.pattern
        assert ours.flags & re.IGNORECASE == theirs.flags & re.IGNORECASE


def test_masking_bytes_agrees_with_redact() -> None:
    text = (
        f"token={KEY} url postgres://me:hunter2pw@db/x "
        "PASSWORD: 'letmein99' ghp_BBBBBBBBBBBBBBBBBBBBBBBB input_tokens=12\n"
    )
    assert shim.mask_shapes(text.encode()).decode() == redact.redact(text)


def test_a_secret_split_anywhere_across_reads_is_masked() -> None:
    data = f"start\nthe key is {KEY} and password=hunter22 end\n".encode()
    expected = shim.mask_shapes(data)
    for size in (1, 3, 7, 16):
        masker = shim.ShapeMasker()
        out = b"".join(masker.feed(data[i : i + size]) for i in range(0, len(data), size))
        assert out + masker.flush() == expected


def test_a_very_long_line_is_written_before_its_end_and_still_masked() -> None:
    masker = shim.ShapeMasker()
    words = b"word " * 20_000  # 100 kB of one unfinished line
    out = masker.feed(words + KEY.encode()[:10])
    assert out  # not all held back
    rest = masker.feed(KEY.encode()[10:] + b" done\n") + masker.flush()
    assert KEY.encode() not in out + rest
    assert (out + rest).endswith(b"word *** done\n")


def test_keys_a_command_prints_never_reach_the_attempt_log(
    harness: Harness, sink: Collector
) -> None:
    half = len(KEY) // 2
    script = (
        f"echo token={KEY}; echo url https://bot:pa55word-x@git.example/repo; "
        f"printf %s 'key {KEY[:half]}'; sleep 0.2; printf '%s\\n' '{KEY[half:]} end'"
    )
    spec = harness.spec("sh", "-c", script)
    outcome = harness.run(spec, sink).wait(WAIT)

    assert outcome is not None
    assert outcome.ok
    with open(spec.log_path, "rb") as f:
        on_disk = f.read()
    assert on_disk == b"token=***\nurl https://bot:***@git.example/repo\nkey *** end\n"
