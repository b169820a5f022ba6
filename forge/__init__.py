"""Forge: an event-sourced orchestrator for coding agents (CLI, settings, daemon, runtimes)."""

from __future__ import annotations

__version__ = "0.1.0"

__all__ = ["__version__"]
