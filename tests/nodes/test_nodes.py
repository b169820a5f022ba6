"""Issue 13, parts 1-3, with real network namespaces: N daemons (nodes) share one namespace of
one Redis, each with its own id, epoch and lease; a node killed with SIGKILL or cut off from
Redis loses its lease and the survivors run its tasks; nothing completes or runs to its end
twice, and `forge events verify` stays clean.

Every wait polls the log (or the netns) with a deadline; the lease TTL is 3 s
(FORGE_NODE_LEASE_TTL) to keep the tests short.
"""

from __future__ import annotations

import time
from collections.abc import Callable

from tests.nodes.netns import Lab, NodeLog, wait_for

LEASE_TTL = 3.0


def _start_node(lab: Lab, index: int) -> str:
    """Start node `index` and wait until the log shows it started; its node id."""
    node = lab.start(index)
    node_id = wait_for(f"node {index}'s pid file", lambda: node.node_id, 30)
    wait_for(f"node {node_id} to start in the log", lambda: lab.log().epochs(node_id), 30)
    return node_id


def _completed(lab: Lab, ids: list[str], timeout: float) -> NodeLog:
    def done() -> NodeLog | None:
        log = lab.log()
        return log if set(ids) <= set(log.completed()) else None

    try:
        return wait_for(f"{len(ids)} tasks to complete", done, timeout, every=0.3)
    except AssertionError as e:
        log = lab.log()
        missing = sorted(set(ids) - set(log.completed()))
        dumps = "\n".join(lab.node_dump(n.index) for n in lab.nodes)
        raise AssertionError(f"{e}; not completed: {missing[:10]}\n{dumps}") from None


def _assert_once(lab: Lab, log: NodeLog, names: dict[str, str]) -> None:
    """Each task completed exactly once and its command ran to its end exactly once."""
    completed = log.completed()
    twice = {t: n for t, n in completed.items() if n != 1}
    assert twice == {}, f"tasks with more than one task.completed: {twice}"
    ends = {name: lab.runs(name)[1] for name in names}
    assert {n: e for n, e in ends.items() if e != 1} == {}, "commands that ran to the end twice"


def _assert_verified(lab: Lab) -> None:
    ok, output = lab.verify()
    assert ok, f"forge events verify:\n{output}"


def test_two_nodes_share_the_work_and_stop_alone(make_lab: Callable[..., Lab]) -> None:
    lab = make_lab(2)
    a, b = _start_node(lab, 0), _start_node(lab, 1)
    assert a != b
    status = lab.forge("status", "--json")
    assert a in status.stdout
    assert b in status.stdout, "forge status lists every node"

    names = {f"t{i}": lab.marked(f"t{i}", 0.3) for i in range(40)}
    ids = lab.submit(names)
    log = _completed(lab, list(ids.values()), 90)
    _assert_once(lab, log, names)
    ran_on = log.completed_on()
    assert set(ran_on.values()) == {a, b}, f"both nodes run tasks: {ran_on}"

    # `forge daemon stop` on A's machine stops A only
    stopped = lab.forge_on(0, "daemon", "stop", timeout=60)
    assert stopped.returncode == 0, stopped.stderr
    node_a, node_b = lab.nodes
    assert node_a.daemon is not None
    assert node_a.daemon.wait(timeout=30) == 0
    wait_for("node A's netns to empty", lambda: not node_a.pids(), 10)
    assert node_b.daemon is not None
    assert node_b.daemon.poll() is None, "stopping A stopped B too"
    more = lab.submit({"after-stop": lab.marked("after-stop", 0.1)})
    log = _completed(lab, list(more.values()), 30)
    assert log.completed_on()[more["after-stop"]] == b
    _assert_verified(lab)


def test_a_killed_node_loses_its_lease_and_its_tasks_run_elsewhere(
    make_lab: Callable[..., Lab],
) -> None:
    lab = make_lab(2, lease_ttl=LEASE_TTL)
    a = _start_node(lab, 0)
    names = {f"k{i}": lab.marked(f"k{i}", 2) for i in range(4)}
    ids = lab.submit(names)
    # A alone takes them (4 agents); B starts once they run on A
    wait_for(
        "the tasks to run on A",
        lambda: all(lab.log().started_on().get(t) == [a] for t in ids.values()),
        30,
    )
    b = _start_node(lab, 1)
    lab.kill(0)  # the daemon and every agent: everything in A's netns

    lost = wait_for(
        f"node.lease_lost of {a}", lambda: lab.log().lease_lost(a), LEASE_TTL + 20, every=0.2
    )
    assert lost
    log = _completed(lab, list(ids.values()), 60)
    _assert_once(lab, log, names)
    assert set(log.completed_on().values()) == {b}, "the survivor completed A's tasks"
    for task_id, nodes in log.started_on().items():
        assert nodes[0] == a, f"{task_id} started first on A"
        assert nodes[-1] == b, f"{task_id} started again on B"
    _assert_verified(lab)


def test_a_cut_off_node_stops_its_agents_and_rejoins_with_a_new_epoch(
    make_lab: Callable[..., Lab],
) -> None:
    lab = make_lab(2, lease_ttl=LEASE_TTL)
    a, b = _start_node(lab, 0), _start_node(lab, 1)
    first_epoch = lab.log().epochs(a)[-1]
    # 8 tasks, 4 agents a node: each node runs 4. Long enough to still run when A is cut off,
    # short enough for B to run A's again after its own; if A's commands survived the cut they
    # would reach their end (and mark it) meanwhile.
    names = {f"p{i}": lab.marked(f"p{i}", 5) for i in range(8)}
    ids = lab.submit(names)

    def split() -> list[str] | None:
        started = lab.log().started_on()
        on_a = [t for t in ids.values() if started.get(t) == [a]]
        on_b = [t for t in ids.values() if started.get(t) == [b]]
        return on_a if len(on_a) + len(on_b) == len(ids) else None

    on_a = wait_for("the 8 tasks to run, 4 on each node", split, 30)
    assert len(on_a) == 4
    node_a = lab.nodes[0]
    assert node_a.agent_pids(), "A's agents run in its netns"

    lab.cut(0)
    cut_at = time.monotonic()
    wait_for("A to stop its agents", lambda: not node_a.agent_pids(), LEASE_TTL + 0.5, every=0.05)
    agents_gone = time.monotonic() - cut_at
    assert agents_gone <= LEASE_TTL + 0.5, f"A stopped its agents {agents_gone:.2f} s after the cut"

    log = _completed(lab, list(ids.values()), 60)
    completed_on = log.completed_on()
    assert {completed_on[t] for t in on_a} == {b}, "the survivor completed A's tasks"
    assert log.lease_lost(a), "the survivor recorded A's lease lost"

    lab.heal(0)
    rejoined = wait_for(
        "A to rejoin with a new epoch",
        lambda: [e for e in lab.log().epochs(a) if e > first_epoch],
        30,
        every=0.3,
    )
    assert rejoined

    log = lab.log()
    _assert_once(lab, log, names)
    _assert_verified(lab)


def test_a_node_cut_off_while_alone_stops_its_agents_before_another_takes_over(
    make_lab: Callable[..., Lab],
) -> None:
    """Alone when cut off, A cannot know whether a node will start meanwhile and take its
    tasks over once its lease has run out: its agents must be gone before that can happen."""
    lab = make_lab(2, lease_ttl=LEASE_TTL)
    a = _start_node(lab, 0)
    names = {f"s{i}": lab.marked(f"s{i}", 8) for i in range(2)}
    ids = lab.submit(names)
    wait_for(
        "the tasks to run on A",
        lambda: all(lab.log().started_on().get(t) == [a] for t in ids.values()),
        30,
    )
    node_a = lab.nodes[0]
    lab.cut(0)
    b = _start_node(lab, 1)

    def on_b() -> bool:
        started = lab.log().started_on()
        return any(started.get(t, [])[-1:] == [b] for t in ids.values())

    wait_for("B to start one of A's tasks", on_b, LEASE_TTL + 30, every=0.05)
    left = node_a.agent_pids()
    assert left == [], f"A's agents still run while B runs their tasks: {left}"

    log = _completed(lab, list(ids.values()), 60)
    lab.heal(0)
    _assert_once(lab, log, names)
    _assert_verified(lab)


def test_labels_choose_nodes_and_a_cancel_reaches_the_owning_node(
    make_lab: Callable[..., Lab],
) -> None:
    lab = make_lab(2)
    a = lab.start(0, env={"FORGE_NODE_LABELS": "red"})
    b = lab.start(1, env={"FORGE_NODE_LABELS": "blue"})
    ids_a = wait_for("node A's id", lambda: a.node_id, 30)
    ids_b = wait_for("node B's id", lambda: b.node_id, 30)
    red = lab.submit({f"r{i}": lab.marked(f"r{i}", 0.2) for i in range(3)}, tags=["red"])
    blue = lab.submit({f"b{i}": lab.marked(f"b{i}", 0.2) for i in range(3)}, tags=["blue"])
    long = lab.submit({"long-red": "sleep 60"}, tags=["red"]) | lab.submit(
        {"long-blue": "sleep 60"}, tags=["blue"]
    )
    log = _completed(lab, [*red.values(), *blue.values()], 60)
    ran_on = log.completed_on()
    assert {ran_on[t] for t in red.values()} == {ids_a}, "red tasks run on the red node only"
    assert {ran_on[t] for t in blue.values()} == {ids_b}, "blue tasks run on the blue node only"

    wait_for(
        "the long tasks to run",
        lambda: all(t in lab.log().started_on() for t in long.values()),
        30,
    )
    assert a.agent_pids()
    assert b.agent_pids()
    cancelled = lab.forge("task", "cancel", long["long-blue"])
    assert cancelled.returncode == 0, cancelled.stderr
    wait_for(
        "the blue task to be cancelled",
        lambda: lab.log().count_by_task("task.cancelled").get(long["long-blue"]),
        30,
    )
    wait_for("B's agent to be gone", lambda: not b.agent_pids(), 15)
    assert a.agent_pids(), "the cancel on B left A's agent alone"
    assert long["long-red"] not in lab.log().count_by_task("task.cancelled")
    _assert_verified(lab)
