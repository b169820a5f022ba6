"""The shims mask secret shapes, not only the values of secret variables, before the disk.

The Python shim keeps a copy of the patterns of `events.redact`; the C shim matches them by
hand and names them in a comment of `shim.c`. Both are pinned to `events.redact` here, and the
C shim must mask a corpus of near-misses exactly as the Python shim does.
"""

from __future__ import annotations

import random
import re
from pathlib import Path

import pytest

from events import redact
from forge.runtimes import native_shim, shim_masking
from tests.runtimes.conftest import BASE_ENV, WAIT, Collector, Harness, wait_until

KEY = "sk-ant-api03-AAAAAAAAAAAAAAAAAAAA"
SHAPES = ("URL_USERINFO", "KEY_SHAPES", "ASSIGNMENT")


def test_the_shims_secret_shapes_are_those_of_events_redact() -> None:
    for name in SHAPES:
        ours: re.Pattern[bytes] = getattr(shim_masking, f"_{name}")
        theirs: re.Pattern[str] = getattr(redact, f"_{name}")
        assert ours.pattern.decode() == theirs.pattern
        assert ours.flags & re.IGNORECASE == theirs.flags & re.IGNORECASE


def test_the_c_shim_implements_the_secret_shapes_of_events_redact() -> None:
    named = dict(
        line.removeprefix("PATTERN ").split(" ", 1)
        for line in native_shim.SOURCE.read_text().splitlines()
        if line.startswith("PATTERN ")
    )
    assert named == {name: getattr(redact, f"_{name}").pattern for name in SHAPES}
    # shim.c folds case for the secret names of ASSIGNMENT only
    ignoring_case = {n for n in SHAPES if getattr(redact, f"_{n}").flags & re.IGNORECASE}
    assert ignoring_case == {"ASSIGNMENT"}


def test_masking_bytes_agrees_with_redact() -> None:
    text = (
        f"token={KEY} url postgres://me:hunter2pw@db/x "
        "PASSWORD: 'letmein99' ghp_BBBBBBBBBBBBBBBBBBBBBBBB input_tokens=12\n"
    )
    assert shim_masking.mask_shapes(text.encode()).decode() == redact.redact(text)


def test_a_secret_split_anywhere_across_reads_is_masked() -> None:
    data = f"start\nthe key is {KEY} and password=hunter22 end\n".encode()
    expected = shim_masking.mask_shapes(data)
    for size in (1, 3, 7, 16):
        masker = shim_masking.ShapeMasker()
        out = b"".join(masker.feed(data[i : i + size]) for i in range(0, len(data), size))
        assert out + masker.flush() == expected


def test_a_very_long_line_is_written_before_its_end_and_still_masked() -> None:
    masker = shim_masking.ShapeMasker()
    words = b"word " * 20_000  # 100 kB of one unfinished line
    out = masker.feed(words + KEY.encode()[:10])
    assert out  # not all held back
    rest = masker.feed(KEY.encode()[10:] + b" done\n") + masker.flush()
    assert KEY.encode() not in out + rest
    assert (out + rest).endswith(b"word *** done\n")


@pytest.mark.usefixtures("shim")
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


# Pieces of secret shapes and of near-misses; random lines of them make the corpus.
PIECES = [
    *(b"password", b"PassWord", b"passwd", b"SECRET", b"token", b"tokens", b"Token", b"TOKENS"),
    *(b"api_key", b"api-key", b"apikey", b"API_KEY", b"api__key", b"my_", b"db.", b"x-", b"_"),
    *(b"=", b":", b"==", b" ", b"\t", b"  =  ", b'"', b"'", b",", b";", b"&", b"@", b"/", b"."),
    *(b"://", b"https://", b"git+ssh://", b"1x://", b"u", b"bot", b":", b"hunter2", b"p:w"),
    *(b"sk-", b"sk-ant-", b"ghp_", b"gho_", b"ghx_", b"GHP_", b"AAAAAA", b"a1b2c3d4e5", b"-_-"),
    *(b"Z" * 20, b"Z" * 19, b"0123456789", b"\xc3\xa9", b"\xff", b"\x00", b"+", b"\x0b", b"\r"),
]


def _corpus(lines: int, seed: int = 11) -> list[bytes]:
    rng = random.Random(seed)  # a fixed corpus: a failure names a line that fails every time
    corpus = [b"".join(rng.choice(PIECES) for _ in range(rng.randint(0, 14))) for _ in range(lines)]
    # '|' ends each line: no shape then spans two lines, so any grouping of lines into reads
    # masks the same
    return [line + b"|\n" for line in corpus]


@pytest.mark.usefixtures("shim")
def test_both_shims_mask_a_corpus_exactly_as_events_redact_does(harness: Harness) -> None:
    lines = _corpus(6000)
    secret = b"letmein-4242"  # the value of a secret variable, masked wherever it appears
    lines += [b"the value " + secret + b" and " + secret[:5] + b"|\n"]
    corpus = harness.tmp / "corpus"
    corpus.write_bytes(b"".join(lines))
    env = {**BASE_ENV, "SERVICE_TOKEN": secret.decode()}
    spec = harness.spec("cat", str(corpus), env=env)
    outcome = harness.run(spec).wait(WAIT)

    assert outcome is not None
    assert outcome.ok
    expected = [shim_masking.mask_shapes(line.replace(secret, b"***")) for line in lines]
    assert shim_masking.mask_shapes(b"".join(lines).replace(secret, b"***")) == b"".join(expected)
    on_disk = [line + b"\n" for line in Path(spec.log_path).read_bytes().split(b"\n")[:-1]]
    differing = [(a, b) for a, b in zip(on_disk, expected, strict=True) if a != b]
    assert differing == []
    assert sum(a != b for a, b in zip(lines, expected, strict=True)) > 1000  # it did mask


@pytest.mark.usefixtures("shim")
def test_a_very_long_line_is_written_before_its_end_and_masked_by_both_shims(
    harness: Harness, sink: Collector
) -> None:
    go = harness.tmp / "go"
    script = (
        "import os, sys, time\n"
        f"sys.stdout.write('word ' * 20000 + {KEY[:10]!r}); sys.stdout.flush()\n"
        f"while not os.path.exists({str(go)!r}): time.sleep(0.01)\n"
        f"sys.stdout.write({KEY[10:]!r} + ' done\\n')\n"
    )
    spec = harness.spec("python3", "-c", script)
    handle = harness.run(spec, sink)
    log = Path(spec.log_path)

    def written() -> int:
        return log.stat().st_size if log.exists() else 0

    wait_until(lambda: written() > 0)  # before the line's end
    go.touch()
    outcome = handle.wait(WAIT)

    assert outcome is not None
    assert outcome.ok
    on_disk = log.read_bytes()
    assert KEY.encode() not in on_disk
    assert on_disk == b"word " * 20000 + b"*** done\n"
