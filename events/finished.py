"""The finished-task map of the fleet state, packed: a few bytes per task, off the object heap.

`FleetState.finished` holds every evicted task's final "state|attempt|epoch" (the fold needs
them: a dependency met long ago, a submission under a known id, a reopening). As a dict it cost
~170 bytes a task in a daemon's memory: the id's string object and the dict's slot, and the
arenas those strings kept from being given back (they are made as each task is submitted, in
between the objects of a backlog that then drains). 200,000 finished tasks held 34 MB.

Here the entries live in byte buckets chosen by a CRC-32 of the id (the same in every process):
each entry is `\\x00 id \\x01 value`, found by a substring search of its bucket. A bucket of a
large map is a block of its own from the C library, which gives it back when freed. Iteration
is bucket by bucket, each in insertion order: the same entries inserted in the same order give
the same buckets, so a replay, a snapshot and the live state encode alike. Ids holding the two
separator bytes (which Forge never makes) are kept in a plain dict beside the buckets.
"""

from __future__ import annotations

import itertools
import zlib
from collections.abc import Iterable, Iterator, Mapping, MutableMapping
from typing import Any

__all__ = ["BUCKETS", "FinishedTasks"]

BUCKETS = 4096  # ~50 entries (~1.7 KB) a bucket at 200,000 tasks: a search is a few µs
_START, _SEP = b"\x00", b"\x01"


def _key(task_id: str) -> bytes:
    return task_id.encode("utf-8", "surrogatepass")


class FinishedTasks(MutableMapping[str, str]):
    """A `dict[str, str]` of finished task id -> "state|attempt|epoch", packed."""

    __slots__ = ("_buckets", "_len", "_odd")

    def __init__(self, entries: Mapping[str, str] | Iterable[tuple[str, str]] = ()) -> None:
        self._buckets: list[bytearray] | None = None  # made at the first entry
        self._odd: dict[str, str] = {}  # ids holding a separator byte
        self._len = 0
        pairs = entries.items() if isinstance(entries, Mapping) else entries
        for task_id, value in pairs:
            self[task_id] = value

    # -- lookups --------------------------------------------------------------------------

    def _find(self, task_id: str) -> tuple[bytearray | None, int, bytes]:
        """(its bucket, where its entry starts there or -1, its needle)."""
        key = _key(task_id)
        if self._buckets is None:
            return None, -1, key
        bucket = self._buckets[zlib.crc32(key) % BUCKETS]
        needle = _START + key + _SEP
        return bucket, bucket.find(needle), needle

    @staticmethod
    def _odd_id(task_id: str) -> bool:
        return "\x00" in task_id or "\x01" in task_id

    def get(self, task_id: str, default: Any = None) -> Any:
        if self._odd_id(task_id):
            return self._odd.get(task_id, default)
        bucket, at, needle = self._find(task_id)
        if bucket is None or at < 0:
            return default
        start = at + len(needle)
        end = bucket.find(_START, start)
        return bucket[start : end if end >= 0 else len(bucket)].decode()

    def __getitem__(self, task_id: str) -> str:
        value: str | None = self.get(task_id)
        if value is None:
            raise KeyError(task_id)
        return value

    def __contains__(self, task_id: object) -> bool:
        if not isinstance(task_id, str):
            return False
        if self._odd_id(task_id):
            return task_id in self._odd
        _, at, _ = self._find(task_id)
        return at >= 0

    def __len__(self) -> int:
        return self._len

    def __iter__(self) -> Iterator[str]:
        for task_id, _ in self._entries():
            yield task_id

    def _entries(self) -> Iterator[tuple[str, str]]:
        for bucket in self._buckets or ():
            for entry in bytes(bucket).split(_START)[1:]:
                key, _, value = entry.partition(_SEP)
                yield key.decode("utf-8", "surrogatepass"), value.decode()
        yield from self._odd.items()

    def items(self) -> Iterator[tuple[str, str]]:  # type: ignore[override]
        return self._entries()

    # -- changes --------------------------------------------------------------------------

    def __setitem__(self, task_id: str, value: str) -> None:
        if self._odd_id(task_id):
            self._len += task_id not in self._odd
            self._odd[task_id] = value
            return
        if self._buckets is None:
            self._buckets = [bytearray() for _ in range(BUCKETS)]
        bucket, at, needle = self._find(task_id)
        assert bucket is not None
        entry = needle + value.encode()
        if at < 0:
            bucket += entry
            self._len += 1
            return
        end = bucket.find(_START, at + 1)
        bucket[at : end if end >= 0 else len(bucket)] = entry  # (in its place, as a dict's)

    def __delitem__(self, task_id: str) -> None:
        if self._odd_id(task_id):
            del self._odd[task_id]
            self._len -= 1
            return
        bucket, at, _ = self._find(task_id)
        if bucket is None or at < 0:
            raise KeyError(task_id)
        end = bucket.find(_START, at + 1)
        del bucket[at : end if end >= 0 else len(bucket)]
        self._len -= 1
        if self._len == len(self._odd):
            self._buckets = None  # (empty, as a map that never had an entry: they encode alike)

    _MISSING: Any = object()

    def pop(self, task_id: str, default: Any = _MISSING) -> Any:
        value = self.get(task_id, self._MISSING)
        if value is self._MISSING:
            if default is self._MISSING:
                raise KeyError(task_id)
            return default
        del self[task_id]
        return value

    def clear(self) -> None:
        self._buckets, self._odd, self._len = None, {}, 0

    # -- copies and encoding --------------------------------------------------------------

    def copy(self) -> FinishedTasks:
        out = FinishedTasks()
        if self._buckets is not None:
            out._buckets = [bytearray(b) for b in self._buckets]
        out._odd, out._len = dict(self._odd), self._len
        return out

    def packed(self) -> list[Any]:
        """The encoded form: [{bucket number: its bytes} for those not empty, odd ids' dict]."""
        buckets = self._buckets or ()
        return [{n: bucket for n, bucket in enumerate(buckets) if bucket}, self._odd]

    @classmethod
    def unpack(cls, raw: Any) -> FinishedTasks:
        """From `packed()`'s form, or a plain mapping (a state encoded as a dict); ValueError
        if it is neither."""
        if isinstance(raw, Mapping):
            return cls(raw)
        if not (isinstance(raw, list) and len(raw) == 2 and isinstance(raw[1], dict)):
            raise ValueError("not a packed finished-task map")
        buckets, odd = raw
        if not isinstance(buckets, dict):
            raise ValueError("a packed finished-task map's buckets are not a map")
        out = cls()
        if buckets:
            out._buckets = [bytearray() for _ in range(BUCKETS)]
            for n, bucket in buckets.items():
                if not (isinstance(n, int) and 0 <= n < BUCKETS and isinstance(bucket, bytes)):
                    raise ValueError("a finished-task bucket is not a numbered byte string")
                if not bucket.startswith(_START):
                    raise ValueError("a finished-task bucket does not open with an entry")
                out._buckets[n] = bytearray(bucket)
                out._len += bucket.count(_START)
        for task_id, value in odd.items():
            if not (isinstance(task_id, str) and isinstance(value, str)):
                raise ValueError("a finished-task entry is not text")
            out[task_id] = value
        return out

    def __eq__(self, other: object) -> bool:
        if isinstance(other, FinishedTasks):
            return self.packed() == other.packed()
        if isinstance(other, Mapping):
            return len(self) == len(other) and dict(self.items()) == dict(other.items())
        return NotImplemented

    __hash__ = None  # type: ignore[assignment]

    def __repr__(self) -> str:
        shown = ", ".join(f"{k!r}: {v!r}" for k, v in itertools.islice(self._entries(), 5))
        more = ", ..." if self._len > 5 else ""
        return f"FinishedTasks({{{shown}{more}}})"
