"""Masking secrets in the output the shim copies to the attempt's log, before it reaches disk.

`Masker` replaces the values of the `--mask-env` variables, even when a value is split across
reads; `ShapeMasker` masks every secret *shape* (the patterns of `events.redact`) line by line.
It is apart from `shim.py` because it is a concept of its own that tests pin against
`events.redact`, not part of the supervising loop. Like the shim, it imports only the standard
library: the shim runs with `-I -S` and imports this module by file when run as a script.
"""

from __future__ import annotations

import re

__all__ = ["ASSIGNMENT", "KEY_SHAPES", "URL_USERINFO", "Masker", "ShapeMasker", "mask_shapes"]

_MIN_SECRET_LEN = 6  # as in events.redact: shorter values would mask ordinary words
_MASK = b"***"
_MAX_HELD_LINE = 1 << 16  # an unfinished line longer than this is written up to its last blank

# The secret shapes of `events.redact` (the shim imports nothing outside the standard library);
# tests/runtimes/test_shim_masking.py pins them equal to that module's patterns.
URL_USERINFO = r"(?<![a-zA-Z0-9+.-])(?P<scheme>[a-zA-Z][a-zA-Z0-9+.-]*://)(?P<user>[^:/@\s]*):(?P<pw>[^@\s/]+)@"
KEY_SHAPES = r"\b(sk-ant-[A-Za-z0-9_-]{6,}|sk-[A-Za-z0-9_-]{20,}|gh[pousr]_[A-Za-z0-9]{20,})"
ASSIGNMENT = (
    r"(?<![A-Za-z0-9_.-])(?P<name>[A-Za-z0-9_.-]*(?:password|passwd|secret|token(?!s)|api[_-]?key)[A-Za-z0-9_]*)"
    r"(?P<sep>\s*[=:]\s*)(?P<quote>[\"']?)(?P<value>[^\s\"',;&]+)"
)

_URL_USERINFO = re.compile(URL_USERINFO.encode())
_KEY_SHAPES = re.compile(KEY_SHAPES.encode())
_ASSIGNMENT = re.compile(ASSIGNMENT.encode(), re.IGNORECASE)


def mask_shapes(data: bytes) -> bytes:
    """`data` with every secret shape masked, as `events.redact.redact` masks text."""
    if not data:
        return data
    data = _URL_USERINFO.sub(lambda m: m["scheme"] + m["user"] + b":" + _MASK + b"@", data)
    data = _KEY_SHAPES.sub(_MASK, data)
    return _ASSIGNMENT.sub(lambda m: m["name"] + m["sep"] + m["quote"] + _MASK, data)


class ShapeMasker:
    """Mask secret shapes line by line: an unfinished line waits for its end (or a blank)."""

    def __init__(self) -> None:
        self._held = b""

    def feed(self, data: bytes) -> bytes:
        buf = self._held + data
        cut = buf.rfind(b"\n") + 1
        if len(buf) - cut > _MAX_HELD_LINE:  # a very long line: write it up to its last blank
            blank = max(buf.rfind(b" ", cut), buf.rfind(b"\t", cut))
            cut = blank + 1 if blank >= 0 else len(buf)
        self._held = buf[cut:]
        return mask_shapes(buf[:cut])

    def flush(self) -> bytes:
        out, self._held = self._held, b""
        return mask_shapes(out)


class Masker:
    """Replace secret values in a byte stream, even when a value is split across chunks."""

    def __init__(self, secrets: list[bytes]) -> None:
        self._secrets = sorted({s for s in secrets if len(s) >= _MIN_SECRET_LEN}, key=len)[::-1]
        self._held = b""

    def feed(self, data: bytes) -> bytes:
        """Mask what can be masked now; hold back a tail that may start a secret."""
        if not self._secrets:
            return data
        buf = self._mask(self._held + data)
        hold = self._partial_suffix(buf)
        self._held = buf[len(buf) - hold :]
        return buf[: len(buf) - hold]

    def flush(self) -> bytes:
        """Everything still held back (at the end of the stream)."""
        out, self._held = self._held, b""
        return out

    def _mask(self, buf: bytes) -> bytes:
        for secret in self._secrets:
            buf = buf.replace(secret, _MASK)
        return buf

    def _partial_suffix(self, buf: bytes) -> int:
        """Length of the longest end of `buf` that is the beginning of a secret."""
        longest = 0
        for secret in self._secrets:
            for size in range(min(len(secret) - 1, len(buf)), longest, -1):
                if buf.endswith(secret[:size]):
                    longest = size
                    break
        return longest
