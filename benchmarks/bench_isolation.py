"""What isolation costs (`make bench`): start to outcome of one shell attempt running `true`,
plain, in the bubblewrap sandbox, under cgroup limits, and both (docs/isolation.md, "Costs").

Needs root, bubblewrap and cgroups (skipped with a line saying so otherwise).
Run alone: `.venv/bin/python -m benchmarks bench_isolation`.
"""

from __future__ import annotations

import os
import shutil
import statistics
import tempfile
import time
from pathlib import Path

from actors.runtime import TaskSpec
from events.event_base import Limits
from forge.runtimes.cgroups import detect
from forge.runtimes.shell import ShellRuntime

RUNS = 30
LIMITS = Limits(memory_mb=512, cpus=1.0, pids=256)


def main() -> None:
    if os.geteuid() != 0 or shutil.which("bwrap") is None or detect().mode == "rlimit":
        print("   skipped: needs root, bubblewrap and cgroups")
        return
    root = Path(tempfile.mkdtemp(prefix="fgbi", dir="/tmp"))
    try:
        (root / "work").mkdir()
        (root / "user").mkdir()
        runtime = ShellRuntime(hidden=[str(root / "home")])
        env = {"PATH": "/usr/bin:/bin", "HOME": str(root / "user")}
        count = 0
        print(f"   cgroups: {detect().mode}; {RUNS} attempts of `true` each")
        cases: list[tuple[str, dict[str, object]]] = [
            ("plain", {}),
            ("sandbox", {"sandbox": True}),
            ("limits", {"limits": LIMITS}),
            ("sandbox + limits", {"sandbox": True, "limits": LIMITS}),
        ]
        for name, fields in cases:
            took = []
            for _ in range(RUNS):
                count += 1
                log = root / "home" / "logs" / f"b{count}" / "attempt-1.log"
                spec = TaskSpec(
                    task_id=f"b{count}",
                    attempt=1,
                    log_path=str(log),
                    command=["true"],
                    cwd=str(root / "work"),
                    env=env,
                    **fields,  # type: ignore[arg-type]
                )
                started = time.perf_counter()
                outcome = runtime.execute(spec, lambda _: None).wait(30)
                took.append(time.perf_counter() - started)
                if outcome is None or not outcome.ok:
                    raise RuntimeError(f"{name}: the attempt failed: {outcome}")
            took.sort()
            p90 = took[int(len(took) * 0.9)]
            median = statistics.median(took) * 1000
            print(f"   {name:17s} median {median:6.1f} ms   p90 {p90 * 1000:6.1f} ms")
    finally:
        shutil.rmtree(root, ignore_errors=True)


if __name__ == "__main__":
    main()
