"""Make the README's picture of `forge top`: a real daemon runs a small mixed fleet of shell
tasks in a fresh FORGE_HOME, and the view is saved as SVG (and PNG when a headless Chromium is
on PATH) once some tasks have finished and others run.

    .venv/bin/python -m benchmarks.top_picture [OUT_DIR]   # default: docs/images
"""

from __future__ import annotations

import asyncio
import os
import shutil
import subprocess
import sys
import tempfile
import time
from pathlib import Path

DEFAULT_OUT = Path(__file__).resolve().parent.parent / "docs" / "images"
SIZE = (150, 42)

TASKS = [  # (priority, name, shell script)
    (
        2,
        "build the docs site",
        "for i in $(seq 1 40); do echo building page $i of 40; sleep 0.4; done",
    ),
    (
        1,
        "run the store tests",
        "for i in $(seq 1 30); do echo test $i of 30 passed; sleep 0.5; done",
    ),
    (3, "lint the actors package", "echo 0 problems; sleep 0.2"),
    (3, "migrate the settings", "echo migrating; sleep 0.3; exit 3"),
    (
        2,
        "benchmark the replay",
        "for i in $(seq 1 50); do echo round $i: 333k events/s; sleep 0.4; done",
    ),
    (3, "format the sources", "echo 61 files left unchanged"),
    (4, "refresh the changelog", "sleep 30"),
    (4, "prune old worktrees", "sleep 30"),
    (5, "rebuild the search index", "sleep 30"),
    (5, "archive last month's logs", "sleep 30"),
    (3, "check the links", "echo 212 links ok"),
]


def _forge(env: dict[str, str], *args: str) -> str:
    done = subprocess.run(
        [sys.executable, "-m", "forge", *args], env=env, capture_output=True, text=True, check=True
    )
    return done.stdout.strip()


async def _picture(out: Path) -> Path:
    from forge.cli.app import App
    from forge.cli.top.app import TopApp

    view = TopApp(App(None, {}))
    async with view.run_test(size=SIZE) as pilot:
        deadline = time.monotonic() + 60
        while time.monotonic() < deadline:
            ended = len(view.model.finished)
            if ended >= 4 and sum(1 for _ in view.model.running()) >= 3:
                break
            await pilot.pause(0.1)
        await pilot.pause(1.2)  # one more tick of elapsed times and progress lines
        view.flush()
        await pilot.pause()
        svg = out / "forge-top.svg"
        view.save_screenshot(svg.name, str(out))
    return svg


def _png(svg: Path) -> Path | None:
    chromium = shutil.which("chromium") or shutil.which("chromium-browser")
    if chromium is None:
        return None
    width, height = svg.read_text().split('viewBox="0 0 ', 1)[1].split('"', 1)[0].split()
    png = svg.with_suffix(".png")
    subprocess.run(
        [
            chromium,
            "--headless",
            "--no-sandbox",
            "--disable-gpu",
            "--hide-scrollbars",
            f"--screenshot={png}",
            f"--window-size={int(float(width))},{int(float(height))}",
            svg.as_uri(),
        ],
        capture_output=True,
        check=True,
        timeout=120,
    )
    return png


def main() -> None:
    out = Path(sys.argv[1]) if len(sys.argv) > 1 else DEFAULT_OUT
    out.mkdir(parents=True, exist_ok=True)
    home = Path(tempfile.mkdtemp(prefix="ftop", dir="/tmp"))
    env = {k: v for k, v in os.environ.items() if not k.startswith("FORGE_")} | {
        "FORGE_HOME": str(home),
        "FORGE_ORCHESTRATOR_MAX_CONCURRENT_AGENTS": "4",
        "FORGE_ORCHESTRATOR_FLEET_BUDGET_USD": "25",
        "FORGE_LOGGING_LEVEL": "warning",
    }
    os.environ.update(env)  # the view in this process reads the same home
    try:
        for priority, name, script in TASKS:
            _forge(env, "task", "submit", "-p", str(priority), "--name", name, "-c", script)
        _forge(env, "daemon", "start")
        svg = asyncio.run(_picture(out))
        print(f"saved {svg}")
        png = _png(svg)
        if png is not None:
            print(f"saved {png}")
    finally:
        subprocess.run(
            [sys.executable, "-m", "forge", "daemon", "stop", "--force"],
            env=env,
            capture_output=True,
            check=False,
        )
        subprocess.run(
            [sys.executable, "-m", "forge", "server", "stop"],
            env=env,
            capture_output=True,
            check=False,
        )
        shutil.rmtree(home, ignore_errors=True)


if __name__ == "__main__":
    main()
