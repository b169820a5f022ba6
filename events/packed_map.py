"""A `dict[str, str]` packed into byte buckets: a few bytes an entry, off the object heap.

The fleet state keeps two maps that grow with history rather than live work:
`FleetState.finished` (every evicted task's final "state|attempt|epoch": the fold needs them, for
a dependency met long ago, a submission under a known id, a reopening) and
`FleetState.idempotency` (every idempotency key ever submitted -> its task). As dicts they cost
~110 bytes an entry in a daemon's memory, and more: their strings are made as each task is
submitted, in between a backlog's objects, and keep the allocator's arenas from being given back
once the backlog drains (200,000 finished tasks held 34 MB).

Here an entry is `\\x00 key \\x01 value` in one of 4,096 byte buckets chosen by a CRC-32 of the
key (the same in every process), found by a substring search of its bucket. A bucket of a large
map is a block of its own from the C library, which gives it back when freed. Iteration is
bucket by bucket, each in insertion order, then the odd entries: the same changes in the same
order give the same buckets, so a replay, a snapshot and the live state encode alike. Entries
whose key or value holds one of the two separator bytes (which Forge never makes) are kept in a
plain dict beside the buckets.
"""

from __future__ import annotations

import itertools
import zlib
from collections.abc import Iterable, Iterator, Mapping, MutableMapping
from typing import Any

__all__ = ["BUCKETS", "PackedMap"]

BUCKETS = 4096  # ~50 entries (~1.7 KB) a bucket at 200,000 entries: a search is a few µs
_START, _SEP = b"\x00", b"\x01"
_MISSING: Any = object()


def _bytes(text: str) -> bytes:
    return text.encode("utf-8", "surrogatepass")


def _text(raw: bytes | bytearray) -> str:
    return raw.decode("utf-8", "surrogatepass")


def _odd(text: str) -> bool:
    return "\x00" in text or "\x01" in text


class PackedMap(MutableMapping[str, str]):
    """A `dict[str, str]`, packed (see the module docstring)."""

    __slots__ = ("_buckets", "_len", "_odd")

    def __init__(self, entries: Mapping[str, str] | Iterable[tuple[str, str]] = ()) -> None:
        self._buckets: list[bytearray] | None = None  # made at the first entry
        self._odd: dict[str, str] = {}  # entries holding a separator byte
        self._len = 0
        pairs = entries.items() if isinstance(entries, Mapping) else entries
        for key, value in pairs:
            self[key] = value

    # -- lookups --------------------------------------------------------------------------

    def _find(self, key: str) -> tuple[bytearray | None, int, int]:
        """(its bucket, where its entry starts there or -1, where its value starts)."""
        if self._buckets is None or _odd(key):
            return None, -1, -1
        raw = _bytes(key)
        bucket = self._buckets[zlib.crc32(raw) % BUCKETS]
        at = bucket.find(_START + raw + _SEP)
        return bucket, at, at + len(raw) + 2

    @staticmethod
    def _end(bucket: bytearray, start: int) -> int:
        end = bucket.find(_START, start)
        return end if end >= 0 else len(bucket)

    def get(self, key: str, default: Any = None) -> Any:
        bucket, at, start = self._find(key)
        if bucket is not None and at >= 0:
            return _text(bucket[start : self._end(bucket, start)])
        return self._odd.get(key, default) if self._odd else default

    def __getitem__(self, key: str) -> str:
        value: Any = self.get(key, _MISSING)
        if value is _MISSING:
            raise KeyError(key)
        return str(value)

    def __contains__(self, key: object) -> bool:
        if not isinstance(key, str):
            return False
        _, at, _ = self._find(key)
        return at >= 0 or key in self._odd

    def __len__(self) -> int:
        return self._len

    def __iter__(self) -> Iterator[str]:
        for key, _ in self._entries():
            yield key

    def _entries(self) -> Iterator[tuple[str, str]]:
        for bucket in self._buckets or ():
            for entry in bytes(bucket).split(_START)[1:]:
                key, _, value = entry.partition(_SEP)
                yield _text(key), _text(value)
        yield from self._odd.items()

    def items(self) -> Iterator[tuple[str, str]]:  # type: ignore[override]
        return self._entries()

    # -- changes --------------------------------------------------------------------------

    def __setitem__(self, key: str, value: str) -> None:
        if _odd(key) or _odd(value):
            if key not in self._odd:
                self._drop(key)
                self._len += 1
            self._odd[key] = value
            return
        if key in self._odd:
            del self._odd[key]
            self._len -= 1
        if self._buckets is None:
            self._buckets = [bytearray() for _ in range(BUCKETS)]
        bucket, at, start = self._find(key)
        assert bucket is not None
        entry = _START + _bytes(key) + _SEP + _bytes(value)
        if at < 0:
            bucket += entry
            self._len += 1
        else:  # in its place, as a dict's
            bucket[at : self._end(bucket, start)] = entry

    def _drop(self, key: str) -> bool:
        """Take `key`'s entry out of the buckets (False: none there)."""
        bucket, at, start = self._find(key)
        if bucket is None or at < 0:
            return False
        del bucket[at : self._end(bucket, start)]
        self._len -= 1
        if self._len == len(self._odd):
            self._buckets = None  # (empty, as a map that never had an entry: they encode alike)
        return True

    def __delitem__(self, key: str) -> None:
        if self._drop(key):
            return
        del self._odd[key]  # (KeyError if it is not there either)
        self._len -= 1

    def pop(self, key: str, default: Any = _MISSING) -> Any:
        value = self.get(key, _MISSING)
        if value is _MISSING:
            if default is _MISSING:
                raise KeyError(key)
            return default
        del self[key]
        return value

    def clear(self) -> None:
        self._buckets, self._odd, self._len = None, {}, 0

    # -- copies and encoding --------------------------------------------------------------

    def copy(self) -> PackedMap:
        out = PackedMap()
        if self._buckets is not None:
            out._buckets = [bytearray(b) for b in self._buckets]
        out._odd, out._len = dict(self._odd), self._len
        return out

    def packed(self) -> list[Any]:
        """The encoded form: [{bucket number: its bytes} for those not empty, odd entries]."""
        buckets = self._buckets or ()
        return [{n: bucket for n, bucket in enumerate(buckets) if bucket}, self._odd]

    @classmethod
    def unpack(cls, raw: Any) -> PackedMap:
        """From `packed()`'s form, or a plain mapping (a state encoded as a dict); ValueError
        if it is neither."""
        if isinstance(raw, Mapping):
            return cls(raw)
        if not (isinstance(raw, list) and len(raw) == 2 and isinstance(raw[1], dict)):
            raise ValueError("not a packed map")
        buckets, odd = raw
        if not isinstance(buckets, dict):
            raise ValueError("a packed map's buckets are not a map")
        out = cls()
        if buckets:
            out._buckets = [bytearray() for _ in range(BUCKETS)]
            for n, bucket in buckets.items():
                if not (isinstance(n, int) and 0 <= n < BUCKETS and isinstance(bucket, bytes)):
                    raise ValueError("a packed map's bucket is not a numbered byte string")
                if not bucket.startswith(_START):
                    raise ValueError("a packed map's bucket does not open with an entry")
                out._buckets[n] = bytearray(bucket)
                out._len += bucket.count(_START)
        for key, value in odd.items():
            if not (isinstance(key, str) and isinstance(value, str)):
                raise ValueError("a packed map's entry is not text")
            if not (_odd(key) or _odd(value)):
                raise ValueError("a packed map's odd entry belongs in a bucket")
            out._odd[key] = value
            out._len += 1
        return out

    def __eq__(self, other: object) -> bool:
        if isinstance(other, PackedMap):
            return self.packed() == other.packed()
        if isinstance(other, Mapping):
            return len(self) == len(other) and dict(self.items()) == dict(other.items())
        return NotImplemented

    __hash__ = None  # type: ignore[assignment]

    def __repr__(self) -> str:
        shown = ", ".join(f"{k!r}: {v!r}" for k, v in itertools.islice(self._entries(), 5))
        more = ", ..." if self._len > 5 else ""
        return f"PackedMap({{{shown}{more}}})"
