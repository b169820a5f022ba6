"""`forge top` as a command: a picture of the view without a terminal, and bad input refused
with one line."""

from __future__ import annotations

from pathlib import Path

import redis

from tests.cli.helpers import completed_task, invoke, one_error_line


def test_screenshot_saves_a_picture_of_the_view(
    forge_env: dict[str, str], redis_client: redis.Redis, tmp_path: Path
) -> None:
    completed_task(redis_client, "task-pictured")
    queued = invoke(["task", "submit", "--name", "in the queue", "-c", "true"])
    assert queued.exit_code == 0, queued.output
    target = tmp_path / "top.svg"
    result = invoke(["top", "--screenshot", str(target), "--size", "140x40"])
    assert result.exit_code == 0, result.output
    assert result.output.strip() == f"saved {target}"
    picture = target.read_text()
    assert picture.startswith("<svg")
    text = picture.replace("&#160;", " ")
    for shown in ("agents", "running", "queue", "finished", queued.output.strip(), "in the queue"):
        assert shown in text, shown


def test_without_a_terminal_it_says_so(forge_env: dict[str, str]) -> None:
    result = invoke(["top"])
    assert result.exit_code == 1
    assert "needs a terminal" in one_error_line(result)


def test_a_bad_size_is_refused(forge_env: dict[str, str], tmp_path: Path) -> None:
    for size in ("wide", "10x10", "200x5", "x40"):
        result = invoke(["top", "--screenshot", str(tmp_path / "x.svg"), "--size", size])
        assert result.exit_code == 2, size
        assert "--size" in one_error_line(result)
        assert not (tmp_path / "x.svg").exists()
