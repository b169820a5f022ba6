"""The container runtime's costs (`make bench`), next to the shell runtime's:

* start-to-outcome of one attempt running `echo` (container created, run, inspected where
  needed, removed; the outcome known), median of 10, with and without limits;
* attempts/s with 4 attempts at a time;
* building (or finding) the test image made from this machine's files.

Needs root and podman; says so and prints nothing else without them.
Run alone: `.venv/bin/python -m benchmarks bench_container`.
"""

from __future__ import annotations

import os
import shutil
import statistics
import subprocess
import tempfile
import time
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

from actors.runtime import RuntimeAdapter, TaskSpec
from events.event_base import Limits
from forge.runtimes.container import ContainerRuntime
from forge.runtimes.container_engine import LABEL_NAMESPACE
from forge.runtimes.shell import ShellRuntime
from tests.container.image import ensure_image

ENV = {"PATH": "/usr/bin:/bin"}
RUNS = 10
NAMESPACE = "bench-container"


def attempt(runtime: RuntimeAdapter, home: Path, n: int, image: str, **fields: object) -> float:
    """Seconds from execute() to the outcome of one `echo` attempt."""
    spec = TaskSpec(
        task_id=f"b{n}",
        attempt=1,
        log_path=str(home / f"{n}.log"),
        command=["echo", "hello"],
        env=ENV,
        image=image,
        **fields,  # type: ignore[arg-type]
    )
    started = time.perf_counter()
    outcome = runtime.execute(spec, lambda _notice: None).wait(60)
    if outcome is None or not outcome.ok:
        raise RuntimeError(f"the attempt failed: {outcome}")
    return time.perf_counter() - started


def main() -> None:
    if shutil.which("podman") is None or os.geteuid() != 0:
        print("needs root and podman: skipped")
        return
    home = Path(tempfile.mkdtemp(prefix="fbc", dir="/tmp"))
    try:
        started = time.perf_counter()
        image = ensure_image("podman")
        found = time.perf_counter() - started
        container = ContainerRuntime(namespace=NAMESPACE)
        shell = ShellRuntime()
        n = iter(range(10_000))
        figures = {
            "shell `echo` attempt, start to outcome (median)": statistics.median(
                attempt(shell, home, next(n), image) for _ in range(RUNS)
            ),
            "container `echo` attempt, start to outcome (median)": statistics.median(
                attempt(container, home, next(n), image) for _ in range(RUNS)
            ),
            "same, with --memory, --cpus, --pids, --network off": statistics.median(
                attempt(
                    container,
                    home,
                    next(n),
                    image,
                    limits=Limits(memory_mb=64, cpus=0.5, pids=64),
                    network="off",
                )
                for _ in range(RUNS)
            ),
        }
        started = time.perf_counter()
        with ThreadPoolExecutor(4) as pool:
            list(pool.map(lambda i: attempt(container, home, i, image), range(1000, 1020)))
        rate = 20 / (time.perf_counter() - started)
        print(f"{'figure':<56}{'value':>12}")
        for name, seconds in figures.items():
            print(f"{name:<56}{seconds * 1000:>9.0f} ms")
        print(f"{'container attempts/s, 4 at a time':<56}{rate:>12.1f}")
        print(f"{'test image built or found (content hash)':<56}{found * 1000:>9.0f} ms")
    finally:
        left = subprocess.run(
            ["podman", "ps", "-aq", f"--filter=label={LABEL_NAMESPACE}={NAMESPACE}"],
            capture_output=True,
            text=True,
            check=False,
        ).stdout.split()
        if left:
            subprocess.run(
                ["podman", "rm", "-f", "-t", "0", *left], capture_output=True, check=False
            )
        shutil.rmtree(home, ignore_errors=True)
