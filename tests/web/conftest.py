"""The dashboard under test: a real `forge web` process over a log written for it, and a real
headless Chromium (Debian's `chromium` + `chromium-driver`) driven through selenium.

One namespace, one server and one browser serve the whole module (starting Chromium is the
slow part). The log tells a small story in two moments: first two tasks are submitted (the
moment the time slider goes back to), then, in a later millisecond, one of them runs on an
agent and a third one completes.
"""

from __future__ import annotations

import os
import re
import shutil
import subprocess
import sys
import tempfile
import time
import uuid
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path

import pytest
import redis
from selenium import webdriver
from selenium.webdriver.chrome.service import Service
from selenium.webdriver.support.ui import WebDriverWait

from events import types as t
from events.store import EventStore
from forge.server import EmbeddedServer

CHROMIUM = shutil.which("chromium") or "/usr/bin/chromium"
CHROMEDRIVER = shutil.which("chromedriver") or "/usr/bin/chromedriver"
WAIT = 15.0  # seconds a condition may take in the browser before the test fails


@dataclass
class Dashboard:
    url: str  # with the token
    base: str  # without it
    token: str
    env: dict[str, str]
    store: EventStore
    first_moment: str  # the id of the last entry of the first moment
    process: subprocess.Popen[str]

    def forge(self, *args: str) -> str:
        """Run `forge ARGS` on the same log; its stdout."""
        done = subprocess.run(
            [sys.executable, "-m", "forge", *args],
            env=self.env,
            capture_output=True,
            text=True,
            timeout=60,
            check=False,
        )
        assert done.returncode == 0, done.stderr
        return done.stdout


def _story(store: EventStore) -> str:
    """Write the log the tests read; return the id that ends the first moment."""
    now = time.time()

    def spec(command: str, priority: int = 3, name: str | None = None) -> t.TaskDefinition:
        return t.TaskDefinition(command=["/bin/sh", "-c", command], priority=priority, name=name)

    store.append_batch(
        [
            t.TaskSubmitted(at=now, task_id="t-build", spec=spec("make build", 2, "build")),
            t.TaskSubmitted(at=now, task_id="t-tests", spec=spec("make test", 1, "run tests")),
        ]
    )
    first = store.last_id()
    assert first is not None
    while int(time.time() * 1000) <= int(first.split("-")[0]):  # the next moment: a later ms
        time.sleep(0.001)
    now = time.time()
    store.append_batch(
        [
            t.AgentSpawned(at=now, agent_id="agent-1", runtime="shell"),
            t.AgentSpawned(at=now, agent_id="agent-2", runtime="shell"),
            t.AgentReady(at=now, agent_id="agent-1"),
            t.AgentReady(at=now, agent_id="agent-2"),
            t.TaskAssigned(at=now, task_id="t-tests", attempt=1, agent_id="agent-1", epoch=1),
            t.AgentBusy(at=now, agent_id="agent-1", task_id="t-tests", attempt=1),
            t.TaskStarted(at=now, task_id="t-tests", attempt=1, agent_id="agent-1"),
            t.TaskSubmitted(at=now, task_id="t-lint", spec=spec("make lint", 3, "lint")),
            t.TaskAssigned(at=now, task_id="t-lint", attempt=1, agent_id="agent-2", epoch=1),
            t.TaskStarted(at=now, task_id="t-lint", attempt=1, agent_id="agent-2"),
            t.TaskUsage(at=now, task_id="t-lint", attempt=1, cost_usd=0.0125),
            t.TaskCompleted(at=now, task_id="t-lint", attempt=1, agent_id="agent-2", exit_code=0),
            t.AgentIdle(at=now, agent_id="agent-2"),
            t.TaskSubmitted(at=now, task_id="t-docs", spec=spec("make docs", 4, "docs")),
            t.ApprovalRequested(
                at=now,
                approval_id="ap-1",
                task_id="t-tests",
                attempt=1,
                tool="Bash",
                summary="git push origin main",
                timeout=600.0,
                expires_at=now + 600,
            ),
            t.BreakerOpened(at=now, name="model-api", until=now + 60, reason="rate limited"),
        ]
    )
    return first


@pytest.fixture(scope="module")
def dashboard(embedded_server: EmbeddedServer) -> Iterator[Dashboard]:
    namespace = f"web-{uuid.uuid4().hex[:8]}"
    env = {
        key: value
        for key, value in os.environ.items()
        if not key.startswith("FORGE_") or key == "FORGE_HOME"
    }
    env |= {
        "FORGE_HOME": str(embedded_server.directory.parent),
        "FORGE_REDIS_NAMESPACE": namespace,
        "FORGE_LOG_FORMAT": "json",
    }
    client: redis.Redis = embedded_server.client()
    store = EventStore(client, namespace)
    first = _story(store)
    errors = tempfile.TemporaryFile("w+")  # noqa: SIM115 - closed at teardown; a pipe nobody reads could fill up
    process = subprocess.Popen(
        [sys.executable, "-m", "forge", "web", "--port", "0"],
        env=env,
        stdout=subprocess.PIPE,
        stderr=errors,
        text=True,
    )
    assert process.stdout is not None
    line = process.stdout.readline()  # blocks until the server prints its address
    found = re.search(r"(http://127\.0\.0\.1:\d+/)\?token=(\S+)", line)
    if found is None:
        process.kill()
        process.communicate()
        errors.seek(0)
        pytest.fail(f"forge web printed {line!r}; stderr: {errors.read()}")
    try:
        yield Dashboard(
            url=found.group(0),
            base=found.group(1),
            token=found.group(2),
            env=env,
            store=store,
            first_moment=first,
            process=process,
        )
    finally:
        process.terminate()
        try:
            process.wait(timeout=15)
        except subprocess.TimeoutExpired:
            process.kill()
            process.wait()
        process.stdout.close()
        errors.close()
        client.close()


@pytest.fixture(scope="module")
def browser() -> Iterator[webdriver.Chrome]:
    """A real headless Chromium; fails (not skips) where Debian's packages are missing, since
    `.ci/run` installs them."""
    assert Path(CHROMIUM).exists(), "chromium is not installed (apt-get install chromium)"
    assert Path(CHROMEDRIVER).exists(), "chromedriver missing (apt-get install chromium-driver)"
    profile = tempfile.mkdtemp(prefix="fg-chromium-")
    options = webdriver.ChromeOptions()
    options.binary_location = CHROMIUM
    for flag in (
        "--headless",
        "--no-sandbox",
        "--disable-gpu",
        "--disable-quic",
        "--no-first-run",
        "--disable-background-networking",
        "--disable-component-update",
        "--disable-sync",
        "--disable-dev-shm-usage",
        "--window-size=1280,860",
        f"--user-data-dir={profile}",
    ):
        options.add_argument(flag)
    driver = webdriver.Chrome(service=Service(executable_path=CHROMEDRIVER), options=options)
    try:
        yield driver
    finally:
        driver.quit()
        shutil.rmtree(profile, ignore_errors=True)


def wait_for(driver: webdriver.Chrome, condition: object, message: str) -> object:
    return WebDriverWait(driver, WAIT, poll_frequency=0.05).until(condition, message)  # type: ignore[arg-type]
