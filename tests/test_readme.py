"""The README's quickstart, run as written: `make demo` must work and say what it proved."""

from __future__ import annotations

import re
import subprocess
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
STAMP = ROOT / ".venv" / ".installed"


def quickstart_commands() -> list[str]:
    text = (ROOT / "README.md").read_text()
    section = text.split("## Quickstart", 1)[1].split("\n## ", 1)[0]
    block = re.search(r"```sh\n(.*?)```", section, re.DOTALL)
    assert block is not None, "the quickstart has no sh block"
    return [line.split("#", 1)[0].strip() for line in block.group(1).splitlines() if line.strip()]


def test_quickstart_lists_demo_and_test() -> None:
    assert quickstart_commands() == ["make demo", "make test"]


def test_make_demo_runs_a_real_job() -> None:
    # `make test` is not run from here (it would run this test again). The virtual environment
    # this test runs in is reused: when make's install stamp is missing, `-o` tells make not
    # to rebuild it.
    argv = quickstart_commands()[0].split()
    if not STAMP.exists():
        argv += ["-o", str(STAMP.relative_to(ROOT))]
    proc = subprocess.run(argv, cwd=ROOT, capture_output=True, text=True, timeout=60, check=False)
    assert proc.returncode == 0, proc.stdout + proc.stderr
    out = proc.stdout
    assert "8/8 tasks completed" in out
    assert "replayed state matches live state" in out
    assert re.search(r"flaky-fetch\s+failed\s+attempt 1 \(crash", out)
    assert re.search(r"flaky-fetch\s+completed\s+2", out)
    assert "merge feature/mul" in out
    assert not (ROOT / ".forge-demo" / "server" / "redis.pid").exists()  # the server stopped
