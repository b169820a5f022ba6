"""Fixtures of the node tests: labs of Forge nodes in network namespaces (see `netns.py`),
skipped with the reason when this machine cannot make them (not root, no `ip netns`)."""

from __future__ import annotations

from collections.abc import Callable, Iterator
from typing import Any

import pytest

from tests.nodes.netns import Lab, unavailable


@pytest.fixture(scope="session")
def netns_ready() -> None:
    reason = unavailable()
    if reason is not None:
        pytest.skip(f"node tests need network namespaces: {reason}")


@pytest.fixture
def make_lab(netns_ready: None) -> Iterator[Callable[..., Lab]]:
    """A factory of labs; every lab made is closed at teardown, whatever happened."""
    made: list[Lab] = []

    def make(nodes: int, **kwargs: Any) -> Lab:
        lab = Lab(nodes, **kwargs)
        made.append(lab)
        return lab.__enter__()

    try:
        yield make
    finally:
        for lab in made:
            lab.close()
