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
    if isinstance(t, ti.VarTupleType):
        return st.lists(_for_type(t.item_type), max_size=3).map(tuple)
    if isinstance(t, ti.DictType):
        return st.dictionaries(_for_type(t.key_type), _for_type(t.value_type), max_size=3)
    if isinstance(t, ti.StructType):
        return struct_of(t.cls)
    if isinstance(t, ti.AnyType):  # e.g. a restored task's state: any msgpack value
        return st.one_of(st.none(), st.booleans(), st.integers(0, MAX_INT), names)
    raise NotImplementedError(t)


def struct_of(cls: type[Any]) -> st.SearchStrategy[Any]:
    """Any instance of a msgspec Struct class, every field generated."""
    info = msgspec.inspect.type_info(cls)
    assert isinstance(info, msgspec.inspect.StructType)
    return st.builds(cls, **{f.name: _for_type(f.type) for f in info.fields})


any_event: st.SearchStrategy[Event] = st.one_of(*(struct_of(c) for c in EVENT_TYPES.values()))
"""Any event of the catalogue."""


# -- bad input for the CLI, settings files and tasks files ------------------------------------

nasty_text: st.SearchStrategy[str] = st.one_of(
    st.sampled_from(
        [
            "",
            "-",
            "--",
            "0",
            "-1",
            "nan",
            "inf",
            "-inf",
            "1e400",
            "\0",
            "a\0b",
            "\n",
            "x=y",
            "=",
            "task-",
            "0-0",
            "-0",
            "99999999999999999999999-0",
            "2025-13-45",
            "~",
            "/",
            "..",
            "\x1b[2J",
            "é",
            "$(true)",
            "'",
            '"',
            "*",
            "{}",
            "[]",
            "a\nb",
        ]
    ),
    st.text(st.characters(exclude_categories=["Cs"]), max_size=20),
    st.text(alphabet="0123456789-.:eTZ+", max_size=24),
)
"""Short text that has broken parsers: numbers out of range, NUL bytes, control characters."""

# Each entry: the words that name a command, and the options it takes (None: a flag).
CLI_COMMANDS: dict[tuple[str, ...], dict[str, bool]] = {
    ("task", "submit"): {
        "--command": True,
        "--priority": True,
        "--runtime": True,
        "--repo": True,
        "--after": True,
        "--tag": True,
        "--max-attempts": True,
        "--timeout": True,
        "--budget-usd": True,
        "--model": True,
        "--name": True,
        "--env": True,
        "--idempotency-key": True,
        "--json": False,
    },
    ("task", "list"): {"--state": True, "--priority": True, "--json": False},
    ("task", "show"): {"--json": False},
    ("task", "cancel"): {},
    ("task", "retry"): {},
    ("task", "history"): {"--json": False},
    ("task", "logs"): {"--attempt": True, "--raw": False},
    ("events", "replay"): {"--until": True, "--no-snapshot": False, "--json": False},
    ("events", "export"): {"--since": True, "--until": True},
    ("events", "tail"): {"--lines": True, "--type": True, "--task": True, "--json": False},
    ("agent", "list"): {"--all": False, "--json": False},
    ("agent", "spawn"): {"--runtime": True, "--tag": True},
    ("agent", "kill"): {"--force": False},
    ("agent", "pause"): {},
    ("agent", "resume"): {},
    ("config", "validate"): {},
    ("config", "show"): {"--json": False},
    ("events", "stats"): {"--json": False},
    ("events", "verify"): {"--json": False},
    ("daemon", "status"): {"--json": False},
    ("daemon", "logs"): {"-n": True, "--raw": False, "--console": False},
    ("status",): {"--json": False},
}


plausible_text = st.sampled_from(
    ["1", "3", "5", "task-done", "queued", "failed", "true", "echo hi && echo ho", "A=B",
     "shell", "noop", "10", "0.5", "1700000000000-0", "2025-01-31T12:00:00", "task.submitted",
     "agent-1", ".", "/tmp"]
)  # fmt: skip
"""Values a command accepts, so that generated invocations also get past the parser."""

cli_values = st.one_of(plausible_text, nasty_text)
_NEEDS_ID = {"show", "cancel", "retry", "history", "logs", "kill", "pause", "resume"}


@st.composite
def cli_arguments(draw: st.DrawFn) -> list[str]:
    """One of the main commands (none that waits: no --follow) with random options and
    positional arguments, each value plausible or a piece of `nasty_text`."""
    words = draw(st.sampled_from(sorted(CLI_COMMANDS)))
    options = CLI_COMMANDS[words]
    args = list(words)
    if words[-1] in _NEEDS_ID or (words[-1] == "submit" and draw(st.booleans())):
        args.append(draw(cli_values))
    for _ in range(draw(st.integers(0, 4))):
        kind = draw(st.sampled_from(["option"] * 6 + ["positional", "unknown"]))
        if kind == "option" and options:
            name = draw(st.sampled_from(sorted(options)))
            args += [name, draw(cli_values)] if options[name] else [name]
        elif kind == "positional":
            args.append(draw(cli_values))
        else:
            args.append(draw(st.sampled_from(["--nope", "-x", "--json=1", "--", "-"])))
    if words == ("events", "export") and "-" not in args:
        args.insert(2, "-")  # to stdout: a FILE argument would litter the working directory
    return args


def _toml_value(value: Any) -> str:
    if isinstance(value, bool):
        return "true" if value else "false"
    if isinstance(value, float):
        return {"nan": "nan", "inf": "inf", "-inf": "-inf"}.get(repr(value), repr(value))
    if isinstance(value, int):
        return str(value)
    if isinstance(value, str):  # a JSON string is a TOML basic string, but for DEL
        return msgspec.json.encode(value).decode().replace("\x7f", "\\u007f")
    if isinstance(value, list):
        return "[" + ", ".join(_toml_value(v) for v in value) + "]"
    items = (f"{_toml_value(k)} = {_toml_value(v)}" for k, v in value.items())
    return "{" + ", ".join(items) + "}"


toml_keys = st.one_of(names, nasty_text)
toml_scalars = st.one_of(
    st.booleans(),
    st.integers(-(2**63), 2**63 - 1),
    st.floats(),  # nan and infinities included: TOML has them
    nasty_text,
)
toml_values: st.SearchStrategy[Any] = st.recursive(
    toml_scalars,
    lambda inner: st.one_of(
        st.lists(inner, max_size=3), st.dictionaries(toml_keys, inner, max_size=3)
    ),
    max_leaves=8,
)


def toml_tables(fields: st.SearchStrategy[str]) -> st.SearchStrategy[str]:
    """The lines of one TOML table: keys drawn from `fields`, values of any type."""
    return st.dictionaries(fields, toml_values, max_size=5).map(
        lambda table: "".join(f"{_toml_value(k)} = {_toml_value(v)}\n" for k, v in table.items())
    )


TASK_FIELDS = ["name", "command", "prompt", "runtime", "priority", "after", "tags",
               "max_attempts", "timeout", "budget_usd", "model", "repo", "cwd", "env",
               "idempotency_key"]  # fmt: skip
SETTINGS_FIELDS = ["url", "namespace", "connect_timeout", "max_concurrent_agents",
                   "shutdown_grace", "snapshot_every", "fleet_budget_usd", "max_attempts",
                   "base_delay", "multiplier", "jitter", "default", "claude_binary",
                   "task_timeout", "env_allowlist", "level", "format"]  # fmt: skip
SETTINGS_SECTIONS = ["redis", "orchestrator", "breaker", "retry", "runtime", "logging"]


field_values: st.SearchStrategy[Any] = st.one_of(
    cli_values,
    st.integers(-2, 7),
    st.floats(),
    st.lists(cli_values, max_size=3),
    st.dictionaries(cli_values, cli_values, max_size=2),
    toml_values,
)
"""A value of a known field: often of the right type, often not."""


def _document(
    heads: st.SearchStrategy[str], fields: st.SearchStrategy[str], real: str = ""
) -> st.SearchStrategy[bytes]:
    anything = toml_tables(fields)
    plausible = st.dictionaries(fields, field_values, max_size=4).map(
        lambda table: "".join(
            [real if real.split(" ", 1)[0] not in table else ""]
            + [f"{_toml_value(k)} = {_toml_value(v)}\n" for k, v in table.items()]
        )
    )
    table = st.tuples(heads, st.one_of(plausible, anything)).map(lambda p: p[0] + "\n" + p[1])
    structured = st.lists(table, max_size=4).map(lambda tables: "".join(tables).encode())
    return st.one_of(
        structured,
        structured.flatmap(lambda doc: st.binary(max_size=8).map(lambda junk: doc + junk)),
        st.binary(max_size=200),
        st.text(max_size=200).map(lambda text: text.encode("utf-8", "surrogatepass")),
    )


tasks_files: st.SearchStrategy[bytes] = _document(
    st.sampled_from(["[[task]]"] * 8 + ["[defaults]", "[task]", "[[defaults]]", "[x]"]),
    st.one_of(st.sampled_from(TASK_FIELDS), toml_keys),
    real='command = "true"\n',
)
"""The bytes of a tasks file: mostly `[[task]]` tables of real and made-up fields, holding
values of any type; sometimes with junk appended, sometimes no TOML at all."""

config_files: st.SearchStrategy[bytes] = _document(
    st.sampled_from([f"[{s}]" for s in SETTINGS_SECTIONS] + ["[[redis]]", "[nope]"]),
    st.one_of(st.sampled_from(SETTINGS_FIELDS), toml_keys),
)
"""The bytes of a settings file, built like `tasks_files` from the real sections and fields."""
