"""Fixtures of the container tests: real Podman, a test image built from this machine's files
(once per machine: it is tagged with its content's hash), a private namespace per test, and
whatever a failing test leaves in the engine removed at teardown.

The tests need root and podman (`.ci/run` installs podman and runc; CI runs as root); without
them they are skipped, saying which is missing."""

from __future__ import annotations

import os
import secrets
import shutil
import subprocess
from collections.abc import Iterator

import pytest

from forge.runtimes.container_engine import LABEL_NAMESPACE
from forge.server import EmbeddedServer
from tests.container.image import ensure_image
from tests.daemon.conftest import DaemonHarness


def _unavailable() -> str | None:
    if shutil.which("podman") is None:
        return "podman is not installed (.ci/run installs podman and runc)"
    if os.geteuid() != 0:
        return "the container tests need root (rootless podman needs subuid maps and a session)"
    return None


@pytest.fixture(scope="session")
def image() -> str:
    """The test image (shell and coreutils of this machine), imported once."""
    reason = _unavailable()
    if reason is not None:
        pytest.skip(reason)
    return ensure_image("podman")


def labelled(namespace: str, *, running_only: bool = False) -> list[str]:
    """Names of the containers Forge labelled with `namespace`, stopped ones too unless
    `running_only`."""
    args = [
        "podman",
        "ps",
        "--format",
        "{{.Names}}",
        f"--filter=label={LABEL_NAMESPACE}={namespace}",
    ]
    if not running_only:
        args.append("--all")
    done = subprocess.run(args, capture_output=True, text=True, check=True, timeout=60)
    return done.stdout.split()


def _remove_all(namespace: str) -> None:
    left = labelled(namespace)
    if left:
        subprocess.run(["podman", "rm", "--force", "--time", "0", *left], check=False, timeout=60)


@pytest.fixture
def namespace(image: str) -> Iterator[str]:
    """A namespace of this test's own; its containers are removed at teardown."""
    name = f"ct{secrets.token_hex(4)}"
    yield name
    _remove_all(name)


@pytest.fixture
def harness(embedded_server: EmbeddedServer, image: str) -> Iterator[DaemonHarness]:
    """The daemon tests' harness (tests/daemon), and its namespace's containers removed at
    teardown."""
    h = DaemonHarness(embedded_server)
    yield h
    h.cleanup()
    _remove_all(h.namespace)
