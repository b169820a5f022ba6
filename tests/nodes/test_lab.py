"""The lab itself: a node started in its own network namespace reaches Redis over TCP, and
`forge status` from the root namespace sees it."""

from __future__ import annotations

from collections.abc import Callable

from tests.nodes.netns import Lab, wait_for


def test_a_node_in_its_netns_is_seen_from_the_root_namespace(make_lab: Callable[..., Lab]) -> None:
    lab = make_lab(1)
    node = lab.nodes[0]
    # the node has no route but its veth: Redis answers it on the host side only
    assert node.pids() == []
    lab.start(0)
    node_id = wait_for("the node's pid file", lambda: node.node_id, 30)

    def seen() -> bool:
        done = lab.forge("status", "--json")
        return done.returncode == 0 and node_id in done.stdout

    wait_for(f"forge status to show node {node_id}", seen, 30, every=0.5)
    assert node.daemon is not None
    assert node.daemon.poll() is None
    assert node.pids()  # the daemon runs inside the netns
    lab.kill(0)
    assert node.pids() == []
