"""The dashboard in a real headless Chromium: the fleet page, a live update pushed from the
log, the time slider against `forge events replay --until`, the token, and a screenshot that
must show a rendered page."""

from __future__ import annotations

import os
import shutil
import time
import urllib.error
import urllib.request
from collections import Counter
from pathlib import Path

import pytest
from selenium.webdriver.common.by import By
from selenium.webdriver.remote.webdriver import WebDriver

from events import types as t
from tests.web.conftest import Dashboard, wait_for
from tests.web.png import pixels

PICTURE = "FORGE_DASHBOARD_PICTURE"  # where to copy the screenshot (docs/images/dashboard.png)


def _text(driver: WebDriver, css: str) -> str:
    """The visible text of the first element `css` selects ("" if none), read in one step
    (the page replaces its elements as the log moves on)."""
    script = "const e = document.querySelector(arguments[0]); return e ? e.innerText : '';"
    return str(driver.execute_script(script, css))


def _has(css: str, text: str) -> object:
    return lambda driver: text in _text(driver, css)


def _visit(browser: WebDriver, dashboard: Dashboard, path: str = "") -> None:
    """Open a page with the token (it becomes a cookie; the address loses it)."""
    joiner = "&" if "?" in path else "?"
    browser.get(f"{dashboard.base}{path}{joiner}token={dashboard.token}")


def _status(url: str, headers: dict[str, str] | None = None) -> int:
    request = urllib.request.Request(url, headers=headers or {})
    try:
        with urllib.request.urlopen(request, timeout=10) as response:
            return int(response.status)
    except urllib.error.HTTPError as e:
        return e.code


def test_a_request_without_the_token_is_refused(dashboard: Dashboard) -> None:
    for path in ("", "api/fleet", "api/tasks", "static/app.js", "time", "api/stream"):
        assert _status(dashboard.base + path) == 401, path
    assert _status(dashboard.base + "api/fleet?token=not-the-token") == 401
    wrong = {"Authorization": "Bearer " + dashboard.token[:-1] + "x"}
    assert _status(dashboard.base + "api/fleet", wrong) == 401
    right = {"Authorization": f"Bearer {dashboard.token}"}
    assert _status(dashboard.base + "api/fleet", right) == 200
    assert _status(dashboard.base + "api/fleet", {"X-Forge-Token": dashboard.token}) == 200
    elsewhere = {"X-Forge-Token": dashboard.token, "Host": "attacker.example:80"}
    assert _status(dashboard.base + "api/fleet", elsewhere) == 403


def test_the_fleet_page_shows_the_running_task(dashboard: Dashboard, browser: WebDriver) -> None:
    _visit(browser, dashboard)
    wait_for(browser, _has("#running", "t-tests"), "the running task is not shown")
    assert "token" not in browser.current_url
    running = _text(browser, "#running")
    assert "agent-1" in running
    assert "t-lint" not in running  # completed: not running
    assert "t-build" in _text(browser, "main")  # queued, priority 2
    assert "$0.0125" in _text(browser, "#spend")
    assert "git push origin main" in _text(browser, "#approvals")
    assert "rate limited" in _text(browser, "#breakers")


def test_a_new_event_is_pushed_to_the_open_page(dashboard: Dashboard, browser: WebDriver) -> None:
    _visit(browser, dashboard)
    wait_for(browser, _has("#running", "t-tests"), "the fleet page did not load")
    wait_for(browser, _has("#live", "live"), "the page is not following the log")
    now = time.time()
    dashboard.store.append_batch(
        [
            t.TaskAssigned(at=now, task_id="t-docs", attempt=1, agent_id="agent-2", epoch=1),
            t.TaskStarted(at=now, task_id="t-docs", attempt=1, agent_id="agent-2"),
        ]
    )
    wait_for(browser, _has("#running", "t-docs"), "the new running task was not pushed")


def test_the_time_slider_shows_what_replay_until_prints(
    dashboard: Dashboard, browser: WebDriver
) -> None:
    _visit(browser, dashboard, "time")
    wait_for(browser, _has("#replay-summary", "state as of"), "the time page did not load")
    now_text = _text(browser, "#replay-summary")
    first_ms = dashboard.first_moment.split("-")[0]
    slider = browser.find_element(By.ID, "slider")
    assert int(slider.get_attribute("min") or 0) <= int(first_ms)
    browser.execute_script(  # move the slider back, as a drag does
        "arguments[0].value = arguments[1];"
        "arguments[0].dispatchEvent(new Event('input', {bubbles: true}));",
        slider,
        first_ms,
    )
    wait_for(
        browser,
        lambda d: _text(d, "#moment-position") == dashboard.first_moment,
        "the slider did not rebuild the fleet at the earlier moment",
    )
    shown = _text(browser, "#replay-summary")
    printed = dashboard.forge("events", "replay", "--until", dashboard.first_moment).strip()
    assert shown == printed
    assert shown != now_text
    assert "tasks: 2 queued" in shown
    assert "t-tests" not in _text(browser, "#moment #running")  # nothing ran yet then
    end = int(slider.get_attribute("max") or 0)
    while int(time.time() * 1000) <= end:  # the next entry lands in a later millisecond
        time.sleep(0.001)
    dashboard.store.append(t.AgentSpawned(at=time.time(), agent_id="agent-late"))
    wait_for(
        browser,
        lambda d: int(slider.get_attribute("max") or 0) > end,
        "the slider's end did not move on with the log",
    )


def test_a_task_page_shows_its_timeline(dashboard: Dashboard, browser: WebDriver) -> None:
    _visit(browser, dashboard, "task/t-lint")
    wait_for(browser, _has("#timeline", "task.completed"), "the timeline is not shown")
    timeline = _text(browser, "#timeline")
    for tag in ("task.submitted", "task.assigned", "task.started", "task.usage"):
        assert tag in timeline
    main = _text(browser, "main")
    assert "make lint" in main
    assert "shell · priority 3" in main
    wait_for(browser, _has("#diff", "no repository"), "the diff section did not answer")


def test_the_tasks_page_filters(dashboard: Dashboard, browser: WebDriver) -> None:
    _visit(browser, dashboard, "tasks?state=completed")
    wait_for(browser, _has("#tasks", "t-lint"), "the completed task is not listed")
    assert "t-build" not in _text(browser, "#tasks")
    _visit(browser, dashboard, "tasks?q=BUILD")
    wait_for(browser, _has("#tasks", "t-build"), "the text filter found nothing")
    assert "t-lint" not in _text(browser, "#tasks")


def test_a_screenshot_of_the_fleet_shows_a_rendered_page(
    dashboard: Dashboard, browser: WebDriver, tmp_path: Path
) -> None:
    _visit(browser, dashboard)
    wait_for(browser, _has("#running", "t-tests"), "the fleet page did not load")
    wait_for(browser, lambda d: d.execute_script("return document.body.dataset.ready"), "ready")
    png = browser.get_screenshot_as_png()
    width, height, rows = pixels(png)
    assert (width, height) > (600, 400)
    step = 4 if len(rows[0]) == width * 4 else 3
    sample = [
        row[x : x + 3]
        for row in rows[60::4]  # below the header bar
        for x in range(0, width * step, step * 4)
    ]
    background = Counter(sample).most_common(1)[0][0]  # an empty page is all background
    inked = sum(1 for colour in sample if colour != background)
    sampled = len(sample)
    assert inked / sampled > 0.05, f"only {inked} of {sampled} pixels differ from the background"
    (tmp_path / "dashboard.png").write_bytes(png)
    target = os.environ.get(PICTURE)
    if target:
        shutil.copyfile(tmp_path / "dashboard.png", target)


@pytest.mark.parametrize("until", ["yesterday", "99999999999999999999-1"])
def test_a_bad_moment_is_one_clear_error(dashboard: Dashboard, until: str) -> None:
    request = urllib.request.Request(
        dashboard.base + f"api/at?until={until}", headers={"X-Forge-Token": dashboard.token}
    )
    with pytest.raises(urllib.error.HTTPError) as refused:
        urllib.request.urlopen(request, timeout=10)
    assert refused.value.code == 400
    assert b"error" in refused.value.read()
