"""`make chaos-nodes`: three Forge nodes, each in a network namespace of its own, sharing one
Redis over TCP, under random SIGKILLs and partitions for about a minute (issue 13).

Everything is real: `forge daemon start --foreground` in each netns (see `tests/nodes/netns.py`),
Debian's redis-server, shell tasks under their shims. Each task's command marks its start and
its end in a file of its own in a directory every node shares, so a command that ran to its end
twice is seen whatever the log says; the processes of every netns are sampled meanwhile, so two
runs of one task alive at once (on two nodes) are seen too.

A fault every few seconds, at least one node always healthy: a node killed (SIGKILL to every
process of its netns) and started again 1-4 s later, or cut off from Redis (its link down) and
healed after 1-10 s (sometimes under the lease TTL, mostly over). Then every node is healed and
running, the tasks are left to finish, `forge daemon stop --all` stops every node.

Prints, each next to its target: tasks lost (not completed), tasks completed twice, commands run
to their end twice, tasks with two runs alive at once, processes left in the nodes' namespaces
after the stop, and the result of `forge events verify`. Exits 1 if a target is missed; needs
root (network namespaces). A command whose first run ended while its node was cut off for longer
than the lease is shown apart, not counted: its completion could not reach the log, so the
survivors had to run it again (at least once across a partition). Each command run twice is told
(where its runs started and ended, which fault they fell in, and its attempts from the log).

    python -m benchmarks.nodes_chaos [--tasks 500] [--seconds 60] [--nodes 3] [--seed 1]
"""

from __future__ import annotations

import argparse
import collections
import contextlib
import random
import re
import sys
import time
from typing import Any

import psutil

from tests.nodes.netns import Lab, NodeLog, unavailable

LEASE_TTL = 3.0
# A command that ends while its node is cut off for longer than the lease cannot be reported:
# the survivors must run it again (at least once across a partition; no design does better).
PARTITIONED = "first end while its node was cut off (or < 1 s before) over the lease TTL"
REPORT_WINDOW = 1.0  # a command that ended this long before a cut may not have reported yet


class Chaos:
    """The faults dealt to a lab's nodes, and what was seen meanwhile."""

    def __init__(self, lab: Lab, rng: random.Random) -> None:
        self.lab = lab
        self.rng = rng
        self.down_until: dict[int, float] = {}  # killed node -> when it starts again
        self.cut_until: dict[int, float] = {}  # cut-off node -> when it is healed
        self.counts: collections.Counter[str] = collections.Counter()
        self.overlaps: set[str] = set()  # task names seen with two runs alive at once
        self.mark = re.compile(re.escape(str(lab.marks)) + r"/(\S+?);")
        self.windows: list[list[Any]] = []  # [node, "killed" or "cut", from, to] (wall clock)
        self.began = time.time()

    def healthy(self) -> list[int]:
        return [
            n.index
            for n in self.lab.nodes
            if n.index not in self.down_until and n.index not in self.cut_until
        ]

    def step(self, now: float, faults_on: bool) -> None:
        for index, until in list(self.down_until.items()):
            if now >= until or not faults_on:
                self.lab.start(index)
                del self.down_until[index]
                self._ended(index)
        for index, until in list(self.cut_until.items()):
            if now >= until or not faults_on:
                self.lab.heal(index)
                del self.cut_until[index]
                self._ended(index)
        healthy = self.healthy()
        if faults_on and len(healthy) >= 2 and self.rng.random() < 0.08:
            index = self.rng.choice(healthy)
            if self.rng.random() < 0.5:
                self.windows.append([index, "killed", time.time(), None])
                self.lab.kill(index)
                self.down_until[index] = now + self.rng.uniform(1, 4)
                self.counts["kills"] += 1
                print(f"   {now:5.1f} s: node {index} killed", flush=True)
            else:
                seconds = self.rng.uniform(1, 10)
                self.lab.cut(index)
                self.windows.append([index, "cut", time.time(), None])
                self.cut_until[index] = now + seconds
                self.counts[
                    "partitions over the lease TTL" if seconds > LEASE_TTL else "blips"
                ] += 1
                print(f"   {now:5.1f} s: node {index} cut off for {seconds:.1f} s", flush=True)
        self.watch_overlaps()

    def _ended(self, index: int) -> None:
        for window in self.windows:
            if window[0] == index and window[3] is None:
                window[3] = time.time()

    def runs_told(self, name: str) -> str:
        """A task's command runs (node, start or end, when) and the faults they fell in."""
        parts = []
        for kind, when, node in self.lab.run_marks(name):
            faults = [
                f"{w[1]} {w[2] - self.began:.1f}-{(w[3] or time.time()) - self.began:.1f}"
                for w in self.windows
                if w[0] == node and w[2] <= when <= (w[3] or time.time())
            ]
            during = f" during {', '.join(faults)}" if faults else ""
            parts.append(f"{kind} {when - self.began:.1f} s on node {node}{during}")
        return "; ".join(parts)

    def first_end_fault(self, name: str) -> str:
        """Why a command may have run to its end twice: where its first run's end fell (its
        node cut off, over or under the lease TTL, or killed within 2 s after), else "other"."""
        ends = [m for m in self.lab.run_marks(name) if m[0] == "end"]
        if not ends:
            return "other"
        _, when, node = ends[0]
        for index, kind, start, ended in self.windows:
            stop = ended or time.time()
            if index != node:
                continue
            if kind == "cut" and start - REPORT_WINDOW <= when <= stop:
                over = stop - start > LEASE_TTL
                return (
                    PARTITIONED if over else "first end while its node was cut off, under the TTL"
                )
            if kind == "killed" and when <= start <= when + 2:
                return "first end under 2 s before its node was killed"
        return "other"

    def watch_overlaps(self) -> None:
        """Two shells of one task's command alive at once (anywhere on the machine); a
        subshell of `$(...)` in the command is one run with its parent."""
        shells: dict[int, tuple[int, str]] = {}
        for proc in psutil.process_iter(["cmdline", "ppid"]):
            cmdline = proc.info["cmdline"] or []
            if len(cmdline) >= 3 and cmdline[1] == "-c":
                match = self.mark.search(cmdline[2])
                if match:
                    shells[proc.pid] = (proc.info["ppid"], match.group(1))
        alive = collections.Counter(
            name for ppid, name in shells.values() if shells.get(ppid, (0, ""))[1] != name
        )
        self.overlaps |= {name for name, n in alive.items() if n > 1}


def _timeline(log: NodeLog, stop_at: float) -> None:
    """The nodes' starts, stops and leases around a `forge daemon stop --all` (sent at 0 s)."""
    kinds = ("daemon.started", "daemon.stopped", "daemon.stop_requested", "node.lease_lost")
    for e in log.events:
        if e["type"] in kinds and e["at"] > stop_at - 5:
            epoch = f" epoch {e['epoch']}" if "epoch" in e else ""
            print(f"   {e['at'] - stop_at:+6.2f} s {e['type']} {e.get('node_id') or ''}{epoch}")


def _settled(lab: Lab, ids: set[str]) -> NodeLog | None:
    log = lab.log()
    done = set(log.completed()) | {e["task_id"] for e in log.of("task.dead_lettered")}
    return log if ids <= done else None


def run(tasks: int, seconds: float, nodes: int, seed: int) -> int:
    rng = random.Random(seed)
    with Lab(nodes, lease_ttl=LEASE_TTL) as lab:
        print(f"lab {lab.tag}: {nodes} nodes, redis on port {lab.port}, lease TTL {LEASE_TTL:g} s")
        for node in lab.nodes:
            lab.start(node.index)
        names = {
            f"c{i}": lab.marked(f"c{i}", round(rng.uniform(0.1, 1.5), 2)) for i in range(tasks)
        }
        ids = lab.submit(names, max_attempts=20)
        by_id = {v: k for k, v in ids.items()}
        chaos = Chaos(lab, rng)
        started = time.monotonic()
        print(f"   submitted {tasks} tasks; faults for {seconds:.0f} s", flush=True)
        log: NodeLog | None = None
        deadline = started + seconds + 300
        last_look = 0.0
        while time.monotonic() < deadline:
            now = time.monotonic() - started
            chaos.step(now, faults_on=now < seconds)
            if now >= seconds and time.monotonic() - last_look > 1:
                last_look = time.monotonic()
                log = _settled(lab, set(ids.values()))
                if log is not None:
                    break
            time.sleep(0.25)
        settled_after = time.monotonic() - started
        print(f"   settled after {settled_after:.1f} s" if log else "   NOT settled", flush=True)

        stop_at = time.time()
        stop = lab.forge("daemon", "stop", "--all", timeout=120)
        print(f"   forge daemon stop --all: exit {stop.returncode} {stop.stderr.strip()}")
        for node in lab.nodes:
            if node.daemon is not None:
                with contextlib.suppress(Exception):
                    node.daemon.wait(timeout=60)
        left = sum(len(node.pids()) for node in lab.nodes)
        for node in lab.nodes:
            for pid in node.pids():
                with contextlib.suppress(psutil.Error):
                    what = " ".join(psutil.Process(pid).cmdline())[:160]
                    print(f"   left in node {node.index}: pid {pid}: {what}")
            if node.pids():
                print(lab.node_dump(node.index, 12))
                _timeline(lab.log(), stop_at)
        ok, verify_output = lab.verify()

        log = lab.log()
        completions = log.completed()
        ends = {name: lab.runs(name)[1] for name in names}
        dead = {e["task_id"] for e in log.of("task.dead_lettered")}
        twice = sorted(n for n, e in ends.items() if e > 1)
        causes = collections.Counter(chaos.first_end_fault(n) for n in twice)
        inherent = causes.pop(PARTITIONED, 0)
        figures = {
            "tasks lost (not completed)": sum(1 for i in ids.values() if i not in completions),
            "   of which dead-lettered": len(dead & set(ids.values())),
            "tasks completed twice": sum(1 for n in completions.values() if n > 1),
            "commands run to their end twice": len(twice) - inherent,
            **{f"   {cause}": count for cause, count in sorted(causes.items())},
            f"   (not counted: {PARTITIONED})": inherent,
            "tasks with two runs alive at once": len(chaos.overlaps),
            "processes left after forge daemon stop --all": left,
            "forge events verify problems": 0 if ok else 1,
        }
        targets = {k: 0 for k in figures if not k.startswith(" ")}
        print(
            f"faults: {chaos.counts['kills']} kills, "
            f"{chaos.counts['partitions over the lease TTL']} partitions over the lease TTL, "
            f"{chaos.counts['blips']} shorter ones; "
            f"{len(log.of('node.lease_lost'))} node.lease_lost events; "
            f"{len(log.of('task.started'))} attempts started for {tasks} tasks"
        )
        missed = []
        for name, value in figures.items():
            target = targets.get(name)
            mark = "" if target is None else f"   target {target}"
            if target is not None and value != target:
                missed.append(name.strip())
                mark += "   MISSED"
            print(f"   {name:<64} {value:>5}{mark}")
        unexplained = [n for n in twice if chaos.first_end_fault(n) != PARTITIONED]
        for name in unexplained[:5] + sorted(set(twice) - set(unexplained))[:3]:
            print(f"   {name} ran twice: {chaos.runs_told(name)}\n      {log.story(ids[name])}")
        for name in sorted(chaos.overlaps)[:5]:
            told = f"{chaos.runs_told(name)}\n      {log.story(ids[name])}"
            print(f"   {name} had two runs alive at once: {told}")
        for task_id in sorted(set(ids.values()) - set(completions))[:5]:
            print(f"   lost: {by_id[task_id]}: {log.story(task_id)}")
        if not ok:
            print(verify_output)
        print("chaos-nodes: all targets met" if not missed else f"chaos-nodes: MISSED {missed}")
        return 1 if missed else 0


def main(argv: list[str]) -> int:
    parser = argparse.ArgumentParser(prog="python -m benchmarks.nodes_chaos")
    parser.add_argument("--tasks", type=int, default=500)
    parser.add_argument("--seconds", type=float, default=60.0)
    parser.add_argument("--nodes", type=int, default=3)
    parser.add_argument("--seed", type=int, default=1)
    args = parser.parse_args(argv)
    reason = unavailable()
    if reason is not None:
        print(f"chaos-nodes needs network namespaces: {reason}")
        return 2
    return run(args.tasks, args.seconds, args.nodes, args.seed)


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
