"""Shared Hypothesis strategies: any event of the catalogue, with bounded values."""

from __future__ import annotations

from typing import Any

import msgspec
from hypothesis import strategies as st

from events.types import EVENT_TYPES, Event

MAX_INT = 2**31 - 1
names = st.text(alphabet="abcdefghijklmnopqrstuvwxyz0123456789-_.", min_size=1, max_size=12)
floats = st.floats(min_value=0, max_value=4e9, allow_nan=False, allow_infinity=False)


def _for_type(t: Any) -> st.SearchStrategy[Any]:
    ti = msgspec.inspect
    if isinstance(t, ti.IntType):
        lo = t.ge if t.ge is not None else 0
        hi = t.le if t.le is not None else MAX_INT
        return st.integers(lo, hi)
    if isinstance(t, ti.FloatType):
        return floats
    if isinstance(t, ti.StrType):
        return names
    if isinstance(t, ti.BoolType):
        return st.booleans()
    if isinstance(t, ti.NoneType):
        return st.none()
    if isinstance(t, ti.UnionType):
        return st.one_of(*(_for_type(x) for x in t.types))
    if isinstance(t, ti.ListType):
        return st.lists(_for_type(t.item_type), max_size=3)
    if isinstance(t, ti.DictType):
        return st.dictionaries(_for_type(t.key_type), _for_type(t.value_type), max_size=3)
    if isinstance(t, ti.StructType):
        return struct_of(t.cls)
    raise NotImplementedError(t)


def struct_of(cls: type[Any]) -> st.SearchStrategy[Any]:
    """Any instance of a msgspec Struct class, every field generated."""
    info = msgspec.inspect.type_info(cls)
    assert isinstance(info, msgspec.inspect.StructType)
    return st.builds(cls, **{f.name: _for_type(f.type) for f in info.fields})


any_event: st.SearchStrategy[Event] = st.one_of(*(struct_of(c) for c in EVENT_TYPES.values()))
"""Any event of the catalogue."""
