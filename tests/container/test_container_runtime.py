"""The container runtime against real Podman: output, exit codes, the bind-mounted working
directory, limits and network reaching the container, stops, a missing image, adoption, and
no container left behind after any of them."""

from __future__ import annotations

import itertools
import json
import os
import signal
import subprocess
from pathlib import Path

import msgspec
import psutil

from actors.runtime import Outcome, RunHandle, TaskSpec
from events.event_base import Limits
from forge.runtimes.container import ContainerRun, ContainerRuntime
from forge.settings import ContainerSettings
from tests.container.conftest import labelled
from tests.runtimes.conftest import WAIT, Collector

ENV = {"PATH": "/usr/bin:/bin", "GREETING": "hello from the host"}
_ids = itertools.count(1)


def spec(tmp_path: Path, image: str, command: str, **fields: object) -> TaskSpec:
    return TaskSpec(
        task_id=(task_id := f"task-{next(_ids)}"),
        attempt=1,
        log_path=str(tmp_path / f"{task_id}.log"),
        command=["/bin/sh", "-c", command],
        env=ENV,
        image=image,
        **fields,  # type: ignore[arg-type]
    )


def ended(handle: RunHandle) -> Outcome:
    outcome = handle.wait(WAIT)
    assert outcome is not None, "the attempt did not end"
    return outcome


def inspect(name: str) -> dict[str, object]:
    done = subprocess.run(
        ["podman", "inspect", name], capture_output=True, text=True, check=True, timeout=60
    )
    found: dict[str, object] = json.loads(done.stdout)[0]["HostConfig"]
    return found


def test_output_exit_code_and_the_mounted_working_directory(
    tmp_path: Path, image: str, namespace: str
) -> None:
    work = tmp_path / "work"
    work.mkdir()
    settings = ContainerSettings(run_args=["--hostname", "forge-box"])  # extra `run` arguments
    runtime = ContainerRuntime(settings, namespace=namespace)
    sink = Collector()
    command = (
        'pwd; echo "$GREETING"; echo "${HOME:-no home}"; cat /etc/hostname; '
        "echo made > made.txt; exit 3"
    )
    handle = runtime.execute(spec(tmp_path, image, command, cwd=str(work)), sink)
    outcome = ended(handle)
    assert (outcome.ok, outcome.failure, outcome.exit_code) == (False, "exit", 3)
    lines = sink.lines()
    assert lines[:2] == [str(work), "hello from the host"]
    assert lines[2] != os.environ.get("HOME")  # the host's HOME stays out
    assert lines[3] == "forge-box"
    assert (work / "made.txt").read_text() == "made\n"  # the directory is the host's own
    assert labelled(namespace) == []

    ok = runtime.execute(spec(tmp_path, image, "echo fine", cwd=str(work)), Collector())
    assert ended(ok).ok
    assert labelled(namespace) == []


def test_limits_and_network_reach_the_container(tmp_path: Path, image: str, namespace: str) -> None:
    runtime = ContainerRuntime(namespace=namespace)
    sink = Collector()
    limits = Limits(memory_mb=48, cpus=0.5, pids=32)
    command = "ls /sys/class/net; echo ready; exec sleep 60"
    handle = runtime.execute(spec(tmp_path, image, command, limits=limits, network="off"), sink)
    assert isinstance(handle, ContainerRun)
    sink.wait_for_line(lambda line: line == "ready")
    assert sink.lines()[0] == "lo"  # --network none: the loopback interface only
    config = inspect(handle.name)
    assert config["Memory"] == 48 * 2**20
    assert config["MemorySwap"] == 48 * 2**20  # no swap past the limit
    assert config["NanoCpus"] == 500_000_000
    assert config["PidsLimit"] == 32
    assert labelled(namespace, running_only=True) == [handle.name]
    usage = handle.resource_usage()  # the container's processes, not the engine's client
    assert usage.processes == 1  # sleep, under the container's init
    assert 0 < usage.rss_bytes < 48 * 2**20
    assert handle.health().alive

    handle.terminate(grace=5.0)  # the engine forwards SIGTERM to the container's init
    assert ended(handle).failure == "cancelled"
    assert labelled(namespace) == []


def test_an_allocation_past_the_memory_limit_is_killed(
    tmp_path: Path, image: str, namespace: str
) -> None:
    runtime = ContainerRuntime(namespace=namespace)
    # tail keeps a line with no newline in memory: 200 MB of zeros, past a 32 MiB limit
    command = "head -c 200000000 /dev/zero | tail"
    handle = runtime.execute(
        spec(tmp_path, image, command, limits=Limits(memory_mb=32)), Collector()
    )
    outcome = ended(handle)
    assert not outcome.ok
    assert outcome.exit_code == 137
    assert "memory limit of 32 MiB" in outcome.reason or "out of memory" in outcome.reason
    assert labelled(namespace) == []


def test_a_timeout_stops_a_container_that_ignores_sigterm(
    tmp_path: Path, image: str, namespace: str
) -> None:
    runtime = ContainerRuntime(namespace=namespace, kill_grace=0.5)
    command = "trap '' TERM; echo ready; while :; do sleep 1; done"
    handle = runtime.execute(spec(tmp_path, image, command, timeout=1.0), Collector())
    assert ended(handle).failure == "timeout"
    assert labelled(namespace) == []  # the engine's client was killed: removed by name


def test_a_missing_image_or_command_fails_the_attempt(
    tmp_path: Path, image: str, namespace: str
) -> None:
    runtime = ContainerRuntime(namespace=namespace)
    missing = f"{image.rsplit(':', 1)[0]}:no-such-tag"
    outcome = ended(runtime.execute(spec(tmp_path, missing, "true"), Collector()))
    assert outcome.failure == "spawn"
    assert outcome.reason.startswith("podman could not run the container: ")
    assert labelled(namespace) == []

    no_command = TaskSpec(
        **{**msgspec.structs.asdict(spec(tmp_path, image, "")), "command": ["nope"]}
    )
    outcome = ended(runtime.execute(no_command, Collector()))
    assert outcome.failure == "spawn"
    assert outcome.reason.startswith("the command cannot start in the container: ")
    assert labelled(namespace) == []


def test_adoption_follows_a_running_container_and_a_lost_one_is_removed(
    tmp_path: Path, image: str, namespace: str
) -> None:
    first = ContainerRuntime(namespace=namespace)
    gate = tmp_path / "go"
    command = f"echo ready; while [ ! -e {gate} ]; do sleep 0.05; done; echo finished"
    work = spec(tmp_path, image, command, cwd=str(tmp_path))
    sink = Collector()
    handle = first.execute(work, sink)
    sink.wait_for_line(lambda line: line == "ready")
    first.cleanup()  # the daemon goes away: the run is detached, the container runs on
    assert labelled(namespace, running_only=True) != []

    second = ContainerRuntime(namespace=namespace)
    adopted = second.adopt(work, handle.pid, handle.create_time, (again := Collector()))
    assert adopted is not None
    gate.touch()
    assert ended(adopted).ok
    assert again.lines()[-1] == "finished"
    assert labelled(namespace) == []

    # a shim killed while its daemon was away: the attempt is lost and its container removed
    lost = spec(tmp_path, image, "echo ready; exec sleep 60")
    sink = Collector()
    handle = second.execute(lost, sink)
    sink.wait_for_line(lambda line: line == "ready")
    second.cleanup()
    os.kill(handle.pid, signal.SIGKILL)
    psutil.Process(handle.pid).wait(WAIT)  # reaped by this process (its parent)
    assert (
        ContainerRuntime(namespace=namespace).adopt(lost, handle.pid, handle.create_time, sink)
        is None
    )
    assert labelled(namespace) == []


def test_cleanup_removes_the_stopped_containers_it_followed_only(
    tmp_path: Path, image: str, namespace: str
) -> None:
    ours, theirs = ContainerRuntime(namespace=namespace), ContainerRuntime(namespace=namespace)
    mine = ours.execute(spec(tmp_path, image, "echo bye"), Collector())
    other = theirs.execute(spec(tmp_path, image, "echo bye"), Collector())  # another node's
    assert isinstance(mine, ContainerRun)
    assert isinstance(other, ContainerRun)
    for run in (mine, other):  # ended, but nobody has asked for the outcomes
        assert run.process.wait(WAIT) is not None
    assert sorted(labelled(namespace)) == sorted([mine.name, other.name])
    ours.cleanup()  # the daemon goes away
    assert labelled(namespace) == [other.name]
    theirs.cleanup()
    assert labelled(namespace) == []


def test_a_missing_engine_fails_the_attempt_in_one_line(tmp_path: Path) -> None:
    runtime = ContainerRuntime(ContainerSettings(engine="podman"), namespace="none")
    work = msgspec.structs.replace(spec(tmp_path, "any:1", "true"), env={"PATH": "/nonexistent"})
    outcome = ended(runtime.execute(work, Collector()))
    assert outcome.failure == "spawn"
    assert outcome.reason == "no container engine: podman is not installed (not on PATH)"
