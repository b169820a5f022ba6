"""The hooks a runtime plugs into `ProcessRun`, and their defaults for a plain command.

A `LineHandler` turns one (already redacted) log line into notices; an `OutcomeBuilder` turns
the shim's exit status, and the failure class of a stop the daemon asked for, into an
`Outcome`. The Claude runtime supplies a stream-json parser and a builder that reads the final
result message; the shell runtime uses the defaults below.
"""

from __future__ import annotations

import signal
from collections.abc import Callable, Iterable, Mapping

import msgspec

from actors.runtime import FailureClass, Notice, Outcome, OutputLine, ProgressNotice
from events.redact import is_secret_name, redact
from forge.runtimes.logfile import ExitStatus

__all__ = [
    "LineHandler",
    "OutcomeBuilder",
    "default_line_handler",
    "default_outcome",
    "redact_notice",
    "secret_env_names",
]

LineHandler = Callable[[str], Iterable[Notice]]
OutcomeBuilder = Callable[[ExitStatus | None, FailureClass | None], Outcome]


def default_line_handler(line: str) -> Iterable[Notice]:
    """Every line is raw output (stdout and stderr are merged in the log)."""
    return (OutputLine(stream="stdout", text=line),)


def signal_name(signum: int) -> str:
    try:
        return signal.Signals(signum).name
    except ValueError:
        return f"signal {signum}"


def default_outcome(status: ExitStatus | None, requested: FailureClass | None) -> Outcome:
    """Classify how an attempt ended; `status` is None when the shim vanished without one.

    In order: the command could not start ("spawn"); the daemon stopped it (the class given
    to `terminate`); the shim stopped it at its timeout ("timeout"); a signal nobody asked for
    killed it ("crash"); it exited 0 (ok) or not ("exit").
    """
    if status is None:
        if requested is not None:
            return Outcome(ok=False, failure=requested, reason=f"stopped ({requested})")
        return Outcome(ok=False, failure="crash", reason="the attempt's processes vanished")
    code, sig = status.exit_code, status.signal
    how = f"exit code {code}" if sig is None else f"killed by {signal_name(sig)}"
    if status.spawn_error is not None:
        return Outcome(ok=False, failure="spawn", reason=status.spawn_error)
    if requested is not None:
        return Outcome(
            ok=False, exit_code=code, signal=sig, failure=requested, reason=f"stopped ({how})"
        )
    if status.timed_out:
        reason = f"timed out after {status.ended_at - status.started_at:.1f}s ({how})"
        return Outcome(ok=False, exit_code=code, signal=sig, failure="timeout", reason=reason)
    if sig is not None:
        return Outcome(ok=False, signal=sig, failure="crash", reason=how)
    if code == 0:
        return Outcome(ok=True, exit_code=0)
    return Outcome(ok=False, exit_code=code, failure="exit", reason=f"exited with code {code}")


def secret_env_names(env: Mapping[str, str]) -> list[str]:
    """The variables whose values the shim must mask: secret-named, known or secret-shaped."""
    return sorted(
        name for name, value in env.items() if is_secret_name(name) or redact(value) != value
    )


def redact_notice(notice: Notice) -> Notice:
    """A notice with its free text redacted (for notices a custom handler made up)."""
    if isinstance(notice, OutputLine):
        return msgspec.structs.replace(notice, text=redact(notice.text))
    if isinstance(notice, ProgressNotice):
        return msgspec.structs.replace(notice, summary=redact(notice.summary))
    return notice
