"""A shim is started as the leader of a session of its own, with only the pipes it is given."""

from __future__ import annotations

import json
import os
import sys
from pathlib import Path

import pytest

from forge.runtimes.spawn import spawn_detached

REPORT = (
    "import json, os, sys\n"
    "sys.stderr.write(json.dumps([os.getsid(0), os.getpid(), dict(os.environ), sys.stdin.read(),"
    " os.readlink('/proc/self/fd/1')]))\n"
)


def test_the_program_leads_a_new_session_with_the_given_stdin_and_stderr(tmp_path: Path) -> None:
    report = tmp_path / "report"
    stdin_read, stdin_write = os.pipe()
    with open(report, "wb") as stderr:
        pid = spawn_detached(
            sys.executable, [sys.executable, "-I", "-c", REPORT], stdin_read, stderr.fileno()
        )
    os.close(stdin_read)
    os.write(stdin_write, b"sent on stdin")
    os.close(stdin_write)
    _, status = os.waitpid(pid, 0)

    assert os.waitstatus_to_exitcode(status) == 0
    session, own_pid, env, stdin, stdout = json.loads(report.read_text())
    assert session == own_pid == pid
    assert session != os.getsid(0)
    assert stdin == "sent on stdin"
    assert stdout == os.devnull
    assert set(env) <= {"LC_CTYPE"}  # nothing of ours: Python itself may set LC_CTYPE


def test_a_program_that_cannot_start_raises(tmp_path: Path) -> None:
    with pytest.raises(FileNotFoundError):
        spawn_detached(str(tmp_path / "missing"), ["missing"], 0, 2)
