"""After a backlog the orchestrator compacts its state on request, and it stays the fold of the
log (actors.orchestrator "compact", forge.memory)."""

from __future__ import annotations

from pathlib import Path

import redis

from forge.runtimes.noop import NoopRuntime
from tests.actors.helpers import (
    all_terminal,
    assert_replay_matches,
    config,
    running_fleet,
    submit,
    wait_for,
)


def test_a_compacted_fleet_state_is_still_the_fold_of_the_log(
    redis_client: redis.Redis, tmp_path: Path
) -> None:
    cfg = config(tmp_path / "logs", max_agents=2)
    with running_fleet(redis_client, {"noop": NoopRuntime()}, cfg, "compact") as (fleet, store):
        ids = [f"c{i}" for i in range(30)]
        for task_id in ids:
            submit(store, task_id, runtime="noop")
        wait_for(fleet, all_terminal(*ids))
        before = fleet.hot_state()
        fleet.compact()
        after = fleet.hot_state()
        assert after.same_as(before)
        assert len(after.finished) == 30
        submit(store, "later", runtime="noop")  # and it goes on as before
        wait_for(fleet, all_terminal("later"))
        assert_replay_matches(store, fleet.hot_state())
