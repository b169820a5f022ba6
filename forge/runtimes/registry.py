"""Runtimes by name: the daemon picks one from the settings with `get_runtime(name)`."""

from __future__ import annotations

import importlib
import importlib.util
from collections.abc import Callable

from actors.runtime import RuntimeAdapter
from forge.errors import ForgeError
from forge.runtimes.noop import NoopRuntime
from forge.runtimes.shell import ShellRuntime

__all__ = ["UnknownRuntime", "available_runtimes", "get_runtime", "register_runtime"]

RuntimeFactory = Callable[[], RuntimeAdapter]


class UnknownRuntime(ForgeError):
    """Raised when a runtime is asked for by a name no runtime is registered under."""


_factories: dict[str, RuntimeFactory] = {"noop": NoopRuntime, "shell": ShellRuntime}

# Runtimes imported on first use ("module:attribute"), so that an optional one (and its
# dependencies) costs nothing until asked for, and a missing module only matters then.
_lazy: dict[str, str] = {"claude": "forge.runtimes.claude:ClaudeRuntime"}


def register_runtime(name: str, factory: RuntimeFactory) -> None:
    """Make `get_runtime(name)` build its runtime with `factory` (replacing any other)."""
    _factories[name] = factory
    _lazy.pop(name, None)


def _importable(target: str) -> bool:
    try:
        return importlib.util.find_spec(target.partition(":")[0]) is not None
    except ImportError:
        return False


def available_runtimes() -> list[str]:
    """The names `get_runtime` accepts."""
    return sorted({*_factories, *(name for name, t in _lazy.items() if _importable(t))})


def get_runtime(name: str) -> RuntimeAdapter:
    """A new runtime of the given name; raises UnknownRuntime for a name nothing provides."""
    factory = _factories.get(name)
    if factory is None and name in _lazy and _importable(_lazy[name]):
        module_name, _, attribute = _lazy[name].partition(":")
        factory = getattr(importlib.import_module(module_name), attribute)
    if factory is None:
        known = ", ".join(available_runtimes())
        raise UnknownRuntime(f"unknown runtime {name!r} (known runtimes: {known})")
    return factory()
