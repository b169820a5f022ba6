"""structlog, configured once at the entry point.

Console output on a TTY, JSON lines otherwise; every event dict passes through the redaction
processor before it is rendered, so a secret cannot reach a log line by accident.
"""

from __future__ import annotations

import logging
import sys
import threading
from collections.abc import MutableMapping
from typing import Any, TextIO

import structlog

from events.redact import redact, redact_value

__all__ = ["configure_logging", "get_logger", "redact_processor"]

_LEVELS = {
    "debug": logging.DEBUG,
    "info": logging.INFO,
    "warning": logging.WARNING,
    "error": logging.ERROR,
}


def redact_processor(
    _logger: Any, _method: str, event_dict: MutableMapping[str, Any]
) -> MutableMapping[str, Any]:
    """Mask secrets in every value of a log event, and whole values under secret-named keys."""
    for key, value in list(event_dict.items()):
        if key == "event" and isinstance(value, str):
            event_dict[key] = redact(value)
        else:
            event_dict[key] = redact_value(value, key)
    return event_dict


def configure_logging(level: str = "info", fmt: str = "auto", stream: TextIO | None = None) -> None:
    """Configure structlog for the whole process; later calls replace the configuration."""
    out = stream if stream is not None else sys.stderr
    console = fmt == "console" or (fmt == "auto" and out.isatty())
    renderer: Any = (
        structlog.dev.ConsoleRenderer(colors=out.isatty())
        if console
        else structlog.processors.JSONRenderer()
    )
    structlog.configure(
        processors=[
            structlog.contextvars.merge_contextvars,
            structlog.processors.add_log_level,
            structlog.processors.TimeStamper(fmt="iso", utc=True),
            structlog.processors.format_exc_info,
            redact_processor,
            renderer,
        ],
        wrapper_class=structlog.make_filtering_bound_logger(_LEVELS.get(level, logging.INFO)),
        logger_factory=structlog.PrintLoggerFactory(file=out),
        cache_logger_on_first_use=False,
    )
    root = logging.getLogger()
    for handler in [h for h in root.handlers if isinstance(h, _ToStructlog)]:
        root.removeHandler(handler)
    root.addHandler(_ToStructlog())
    root.setLevel(_LEVELS.get(level, logging.INFO))
    threading.excepthook = _thread_excepthook


class _ToStructlog(logging.Handler):
    """Hands records of the standard library's loggers (pykka's reports of a failed actor,
    among others) to structlog, so that every line of the log has the same form."""

    def emit(self, record: logging.LogRecord) -> None:
        try:
            logger = structlog.get_logger(record.name).bind(component=record.name)
            method = getattr(logger, record.levelname.lower(), logger.error)
            if record.exc_info and record.exc_info[0]:
                method(record.getMessage(), exc_info=record.exc_info)
            else:
                method(record.getMessage())
        except Exception:
            self.handleError(record)


def _thread_excepthook(args: threading.ExceptHookArgs) -> None:
    """An exception that ends a thread is logged like any error, never printed raw."""
    if args.exc_type is SystemExit:
        return
    name = args.thread.name if args.thread is not None else "?"
    structlog.get_logger("forge.thread").error(
        "thread failed",
        component="forge.thread",
        thread=name,
        exc_info=(args.exc_type, args.exc_value, args.exc_traceback),
    )


def get_logger(name: str, **context: Any) -> Any:
    """A logger bound to a component name and any explicit context."""
    # initial values keep the logger lazy: it takes the configuration in force at each call,
    # so a module-level logger made before `configure_logging` still writes where it says
    return structlog.get_logger(name, component=name, **context)
