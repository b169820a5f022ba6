"""Runtimes by name: the built-in ones, and those other distributions provide as plugins.

A distribution adds a runtime by declaring an entry point in the `forge.runtimes` group, named
after the runtime and pointing at a factory: a class or callable that returns a
`actors.runtime.RuntimeAdapter`. A factory with a `from_settings(settings)` classmethod is built
with the daemon's settings (as the claude runtime is); any other is called with no argument.

    [project.entry-points."forge.runtimes"]
    echo = "forge_echo:EchoRuntime"

The list of runtimes is computed once per process (the entry points are read on first use and
their modules imported only when a runtime is built), so submitting a task costs no lookup. A
built-in name cannot be taken over by a plugin. See docs/runtimes.md.
"""

from __future__ import annotations

import functools
import importlib
import importlib.metadata
import importlib.util
from collections.abc import Callable
from typing import Any

from actors.runtime import RuntimeAdapter
from forge.errors import ForgeError
from forge.runtimes.noop import NoopRuntime
from forge.runtimes.shell import ShellRuntime

__all__ = [
    "ENTRY_POINT_GROUP",
    "UnknownRuntime",
    "available_runtimes",
    "get_runtime",
    "load_factory",
    "register_runtime",
    "shadowed_plugins",
]

ENTRY_POINT_GROUP = "forge.runtimes"

RuntimeFactory = Callable[[], RuntimeAdapter]


class UnknownRuntime(ForgeError):
    """Raised when a runtime is asked for by a name no runtime is registered under."""


_BUILT_IN: dict[str, RuntimeFactory] = {"noop": NoopRuntime, "shell": ShellRuntime}
_factories: dict[str, RuntimeFactory] = dict(_BUILT_IN)

# Runtimes imported on first use ("module:attribute"), so that an optional one (and its
# dependencies) costs nothing until asked for, and a missing module only matters then.
_LAZY_BUILT_IN: dict[str, str] = {
    "claude": "forge.runtimes.claude:ClaudeRuntime",
    "container": "forge.runtimes.container:ContainerRuntime",
}
_lazy: dict[str, str] = dict(_LAZY_BUILT_IN)


def register_runtime(name: str, factory: RuntimeFactory) -> None:
    """Make `get_runtime(name)` build its runtime with `factory` (replacing any other)."""
    _factories[name] = factory
    _lazy.pop(name, None)
    available_runtimes.cache_clear()


def _importable(target: str) -> bool:
    try:
        return importlib.util.find_spec(target.partition(":")[0]) is not None
    except (ImportError, ValueError):
        return False


@functools.cache
def _entry_points() -> tuple[dict[str, str], tuple[str, ...]]:
    """The runtimes other distributions declare (name -> "module:attribute"), read once, and
    the names they declare that are built in (ignored)."""
    found: dict[str, str] = {}
    shadowed: list[str] = []
    for entry in importlib.metadata.entry_points(group=ENTRY_POINT_GROUP):
        if entry.name in _BUILT_IN or entry.name in _LAZY_BUILT_IN:
            shadowed.append(entry.name)
        else:
            found.setdefault(entry.name, entry.value)
    return found, tuple(shadowed)


def _plugins() -> dict[str, str]:
    return _entry_points()[0]


def shadowed_plugins() -> tuple[str, ...]:
    """Names that plugins declare but that are built in (the built-in runtime is used)."""
    return _entry_points()[1]


def _target(name: str) -> str | None:
    return _lazy.get(name) or _plugins().get(name)


@functools.cache
def available_runtimes() -> list[str]:
    """The names `get_runtime` accepts (computed once; `register_runtime` refreshes it)."""
    lazy = {**_plugins(), **_lazy}
    return sorted({*_factories, *(name for name, t in lazy.items() if _importable(t))})


def load_factory(name: str) -> Any:
    """The factory of a runtime (a class or callable), importing its module if need be."""
    factory: Any = _factories.get(name)
    target = None if factory is not None else _target(name)
    if factory is None and target is not None and _importable(target):
        module_name, _, attribute = target.partition(":")
        try:
            factory = getattr(importlib.import_module(module_name), attribute)
        except (ImportError, AttributeError) as e:
            raise UnknownRuntime(f"runtime {name!r} cannot be loaded from {target}: {e}") from e
    if factory is None:
        known = ", ".join(available_runtimes())
        raise UnknownRuntime(f"unknown runtime {name!r} (known runtimes: {known})")
    return factory


def get_runtime(name: str) -> RuntimeAdapter:
    """A new runtime of the given name; raises UnknownRuntime for a name nothing provides."""
    runtime: RuntimeAdapter = load_factory(name)()
    return runtime
