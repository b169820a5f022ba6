"""An attempt's files on disk: the output log, its status file, and reading them line by line.

The log holds the agent's stdout and stderr, merged, exactly as printed except that the values
of secret environment variables are masked by the shim before they are written. The status
file (`<log>.status.json`) appears, atomically, when the attempt has ended; until then the
record file (`<log>.procs.json`) lists the shim's children, to find them should the shim die.
The exit record (`<log>.exit.json`, the status file's format) is written the moment the shim
reaps the command, before it kills what is left and drains the output: a shim killed in that
window leaves the command's exit status there. The shim removes it once the status is written;
the status file is the authority whenever it exists.
"""

from __future__ import annotations

import os
import threading
from collections.abc import Iterator

import msgspec

from events.redact import redact
from forge.errors import NotFound

__all__ = [
    "ExitStatus",
    "LineReader",
    "decode_line",
    "exit_record_path_for",
    "iter_log_lines",
    "read_exit_record",
    "read_status",
    "record_path_for",
    "status_path_for",
]

MIN_DELAY = 0.001  # seconds to sleep after the first empty read
MAX_DELAY = 0.05  # the sleep between empty reads doubles up to this
_READ_SIZE = 1 << 20


class ExitStatus(msgspec.Struct, frozen=True, kw_only=True):
    """The status file the shim writes when the attempt ends."""

    pid: int | None = None  # the shim's PID
    exit_code: int | None = None  # None when killed by a signal or never started
    signal: int | None = None  # the signal that killed the command
    timed_out: bool = False  # the shim stopped the command at its timeout
    stop_signal: int | None = None  # a signal the shim received and forwarded (SIGTERM, ...)
    started_at: float = 0.0
    ended_at: float = 0.0
    spawn_error: str | None = None  # why the command could not be started


_status_decoder = msgspec.json.Decoder(ExitStatus)


def status_path_for(log_path: str) -> str:
    """Where the shim reports how the attempt logged at `log_path` ended."""
    return f"{log_path}.status.json"


def exit_record_path_for(log_path: str) -> str:
    """Where the shim writes how the command ended, the moment it reaps it."""
    return f"{log_path}.exit.json"


def record_path_for(log_path: str) -> str:
    """Where the shim lists its children (PID, start ticks) while the attempt runs."""
    return f"{log_path}.procs.json"


def read_status(status_path: str) -> ExitStatus | None:
    """The attempt's exit status, or None while it has not ended (or the file is unreadable)."""
    try:
        with open(status_path, "rb") as f:
            return _status_decoder.decode(f.read())
    except (FileNotFoundError, msgspec.DecodeError):
        return None


def read_exit_record(exit_record_path: str, pid: int) -> ExitStatus | None:
    """How the command of the shim `pid` ended, from the record that shim wrote when it
    reaped the command; None if there is none (or it is another shim's)."""
    record = read_status(exit_record_path)
    return record if record is not None and record.pid == pid else None


def decode_line(raw: bytes) -> str:
    """One log line as text: UTF-8 (bad bytes replaced), without its line ending."""
    if raw.endswith(b"\r"):
        raw = raw[:-1]
    return raw.decode("utf-8", errors="replace")


class LineReader:
    """Complete lines appended to a file since the last read; a partial line waits for its end."""

    def __init__(self, path: str, offset: int = 0) -> None:
        self._file = open(path, "rb")  # noqa: SIM115 - closed by close(), kept open while following
        self._file.seek(offset)
        self._buf = bytearray()

    @property
    def offset(self) -> int:
        """Where the next unread line starts in the file."""
        return self._file.tell() - len(self._buf)

    def read(self) -> list[bytes] | None:
        """The lines completed by new data (maybe none); None when there was no new data."""
        data = self._file.read(_READ_SIZE)
        if not data:
            return None
        scan = len(self._buf)  # the bytes already held contain no newline
        self._buf += data
        lines: list[bytes] = []
        start = 0
        while (end := self._buf.find(b"\n", scan)) != -1:
            lines.append(bytes(self._buf[start:end]))
            start = scan = end + 1
        del self._buf[:start]
        return lines

    def rest(self) -> bytes | None:
        """The unterminated last line, once the file is known to be complete."""
        if not self._buf:
            return None
        rest = bytes(self._buf)
        self._buf.clear()
        return rest

    def close(self) -> None:
        self._file.close()


def _as_is(text: str) -> str:
    return text


def iter_log_lines(
    log_path: str,
    follow: bool = False,
    stop: threading.Event | None = None,
    *,
    redacted: bool = True,
) -> Iterator[str]:
    """The redacted lines of an attempt's log; with `follow`, until the attempt has ended.

    Raises NotFound when there is no such log. Following ends when the status file exists and
    the log is drained, or when `stop` is set. `redacted=False` yields the lines as written,
    for a reader that parses them and masks what it prints (masking can break a JSON line).
    """
    mask = redact if redacted else _as_is
    try:
        reader = LineReader(log_path)
    except FileNotFoundError as e:
        raise NotFound(f"no log at {log_path}") from e
    status_path = status_path_for(log_path)
    halt = stop or threading.Event()
    delay = MIN_DELAY
    try:
        while True:
            lines = reader.read()
            if lines is not None:
                delay = MIN_DELAY
                yield from (mask(decode_line(line)) for line in lines)
                continue
            if not follow or os.path.exists(status_path) or halt.is_set():
                # the status file is written after the last byte of output: drain and stop
                while (lines := reader.read()) is not None:
                    yield from (mask(decode_line(line)) for line in lines)
                if (rest := reader.rest()) is not None:
                    yield mask(decode_line(rest))
                return
            halt.wait(delay)
            delay = min(delay * 2, MAX_DELAY)
    finally:
        reader.close()
