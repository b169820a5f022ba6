"""The container engine, Podman or Docker, driven through its command line.

Everything the container runtime asks of an engine is here: which engine to use, whether an
image is there, the `run` command line of an attempt, and stopping, inspecting and removing the
containers Forge labelled. Every container Forge starts carries three labels — the namespace of
its log, the task and the attempt — and a name made of them, so that a container is found again
by what it runs, never by a guess: to stop it, to learn that the kernel killed it for memory,
to remove it when its attempt has ended.

Images are never pulled (`--pull never`): an image Forge runs is one the machine has.
"""

from __future__ import annotations

import contextlib
import re
import resource
import shutil
import subprocess
import time
from collections.abc import Mapping, Sequence

import msgspec

from events.event_base import Limits
from forge.errors import ForgeError, InvalidTask
from forge.settings import ContainerSettings

__all__ = [
    "LABEL_ATTEMPT",
    "LABEL_NAMESPACE",
    "LABEL_TASK",
    "ContainerUnavailable",
    "Engine",
    "RunRequest",
    "container_name",
    "engine_env",
    "engine_env_names",
    "find_engine",
    "submitted_image",
]

LABEL_NAMESPACE = "forge.namespace"
LABEL_TASK = "forge.task"
LABEL_ATTEMPT = "forge.attempt"

ENGINES = ("podman", "docker")
_REMOVE_TRIES = 6
_CALL_TIMEOUT = 60.0  # seconds: an engine call that takes longer is stuck
# variables that describe the host, not the task: the image's own values stand
HOST_ONLY_ENV = frozenset({"PATH", "HOME", "USER", "LOGNAME", "SHELL", "TMPDIR", "PWD"})
_SYSTEM_PATH = ("/usr/local/sbin", "/usr/local/bin", "/usr/sbin", "/usr/bin", "/sbin", "/bin")
# images found at submit, and when: a tasks file of many tasks on one image asks the engine once
_images_seen: dict[tuple[str, str], float] = {}
_SEEN_FOR = 30.0  # seconds
_NAME_UNSAFE = re.compile(r"[^a-zA-Z0-9_.-]")


class ContainerUnavailable(ForgeError):
    """Raised when no container engine can be used, or an image is not on this machine."""


def container_name(namespace: str, task_id: str, attempt: int) -> str:
    """The name of an attempt's container: unique per namespace, task and attempt."""
    return _NAME_UNSAFE.sub("_", f"forge-{namespace}-{task_id}-{attempt}")


class RunRequest(msgspec.Struct, frozen=True, kw_only=True):
    """What one attempt's container runs, and with what."""

    name: str
    labels: dict[str, str]
    image: str
    command: list[str]
    workdir: str | None = None  # bind-mounted at the same path, and the working directory
    env_names: list[str] = []  # passed by name: values travel in the engine's environment
    limits: Limits | None = None
    network: str | None = None  # "off": no network at all; "on", "api" or None: the default
    extra_args: list[str] = []


class Engine(msgspec.Struct, frozen=True, kw_only=True):
    """One engine's command line (`path`), and which engine it is (`kind`)."""

    kind: str  # "podman" or "docker"
    path: str

    def run_argv(self, request: RunRequest) -> list[str]:
        """The `run` command line of an attempt: attached (its output is the attempt's log,
        its exit code the command's), an init process that forwards the stop signal, the
        limits and network of the task, then the settings' extra arguments."""
        argv = [self.path, "run", "--name", request.name, "--pull", "never", "--init"]
        if self.kind == "podman":
            argv.append("--replace")  # a container left by an earlier start of this attempt
        for key, value in sorted(request.labels.items()):
            argv += ["--label", f"{key}={value}"]
        argv += _ulimits()
        limits = request.limits
        if limits is not None and limits.memory_mb is not None:
            memory = f"{limits.memory_mb}m"
            argv += ["--memory", memory, "--memory-swap", memory]  # no swap past the limit
        if limits is not None and limits.cpus is not None:
            argv += ["--cpus", f"{limits.cpus:g}"]
        if limits is not None and limits.pids is not None:
            argv += ["--pids-limit", str(limits.pids)]
        if request.network == "off":
            argv += ["--network", "none"]
        if request.workdir is not None:
            argv += [
                "--volume",
                f"{request.workdir}:{request.workdir}",
                "--workdir",
                request.workdir,
            ]
        for name in request.env_names:
            argv += ["--env", name]
        return [*argv, *request.extra_args, request.image, *request.command]

    def call(self, *args: str) -> subprocess.CompletedProcess[str]:
        """Run one engine command and return what it did (never raises for its exit code)."""
        try:
            return subprocess.run(
                [self.path, *args],
                capture_output=True,
                text=True,
                timeout=_CALL_TIMEOUT,
                check=False,
                stdin=subprocess.DEVNULL,
            )
        except (OSError, subprocess.TimeoutExpired) as e:
            return subprocess.CompletedProcess([self.path, *args], 125, "", str(e))

    def check_image(self, image: str) -> None:
        """Raise ContainerUnavailable unless `image` is on this machine (and the engine works)."""
        done = self.call("image", "inspect", "--format", "{{.Id}}", image)
        if done.returncode == 0:
            return
        said = next((line.strip() for line in done.stderr.splitlines() if line.strip()), "")
        if "image not known" in said.lower() or "no such image" in said.lower():
            raise ContainerUnavailable(
                f"image {image!r} is not on this machine ({self.kind} images lists what is; "
                "Forge never pulls: build or pull it first)"
            )
        raise ContainerUnavailable(f"{self.kind} cannot be used: {said or 'no reason given'}")

    def init_pid(self, name: str) -> int | None:
        """The host PID of the running container's first process (its init), if it runs."""
        done = self.call("inspect", "--format", "{{.State.Pid}}", name)
        pid = done.stdout.strip()
        return int(pid) if done.returncode == 0 and pid.isdigit() and int(pid) > 0 else None

    def oom_killed(self, name: str) -> bool:
        """Whether the kernel killed container `name` for memory (False if it is gone)."""
        done = self.call("inspect", "--format", "{{.State.OOMKilled}}", name)
        return done.returncode == 0 and done.stdout.strip() == "true"

    def remove(self, *names: str) -> bool:
        """Kill and remove these containers, whatever state they are in (gone is fine); False
        if the engine still refuses after a few tries. A container whose processes are dying
        as it is removed makes the engine fail ("container state improper"): it is tried again."""
        wait = ["--time", "0"] if self.kind == "podman" else []
        for attempt in range(_REMOVE_TRIES):
            if not names:
                return True
            done = self.call("rm", "--force", *wait, *names)
            if done.returncode == 0:
                return True
            time.sleep(min(0.05 * 2**attempt, 1.0))
            names = tuple(n for n in names if self.exists(n))
        return not names

    def exists(self, name: str) -> bool:
        return self.call("container", "inspect", "--format", "{{.Id}}", name).returncode == 0

    def labelled(self, labels: Mapping[str, str], *, running: bool | None = None) -> list[str]:
        """Names of the containers carrying all of `labels` (`running`: only those that run,
        or only those that do not)."""
        args = ["ps", "--all", "--format", "{{.Names}}"]
        args += [f"--filter=label={k}={v}" for k, v in sorted(labels.items())]
        done = self.call(*args)
        if done.returncode != 0:
            return []
        names = [line.strip() for line in done.stdout.splitlines() if line.strip()]
        if running is None:
            return names
        live = set(self.call(*args, "--filter=status=running").stdout.split())
        return [n for n in names if (n in live) == running]

    def pause(self, name: str) -> None:
        self.call("pause", name)

    def unpause(self, name: str) -> None:
        self.call("unpause", name)


def find_engine(choice: str = "auto", search_path: str | None = None) -> Engine:
    """The engine to use: `podman` or `docker` by name, or for "auto" the first of them on
    PATH. Raises ContainerUnavailable when it is not installed."""
    kinds = ENGINES if choice == "auto" else (choice,)
    for kind in kinds:
        path = shutil.which(kind, path=search_path)
        if path is not None:
            return Engine(kind=kind, path=path)
    wanted = "podman or docker" if choice == "auto" else choice
    raise ContainerUnavailable(f"no container engine: {wanted} is not installed (not on PATH)")


def _ulimits() -> list[str]:
    """The daemon's own open-files and processes limits, passed explicitly: the engines' defaults
    (a million open files) are over what a host allows its processes, and runc then refuses to
    start the container ("error setting rlimits"). The process count is capped by the kernel's
    pid_max, the most runc accepts."""
    nofile = resource.getrlimit(resource.RLIMIT_NOFILE)
    nproc = resource.getrlimit(resource.RLIMIT_NPROC)
    pid_max = 32768
    with contextlib.suppress(OSError, ValueError), open("/proc/sys/kernel/pid_max") as f:
        pid_max = int(f.read())
    soft, hard = (min(pid_max, v if v >= 0 else pid_max) for v in nproc)
    files = "{}:{}".format(*(v if v >= 0 else 1048576 for v in nofile))
    return ["--ulimit", f"nofile={files}", "--ulimit", f"nproc={soft}:{hard}"]


def engine_env_names(env: Mapping[str, str]) -> list[str]:
    """The variables of the attempt's environment that go into its container (by name)."""
    return sorted(n for n in env if n not in HOST_ONLY_ENV)


def engine_env(env: Mapping[str, str]) -> dict[str, str]:
    """The engine's own environment: the attempt's (the container takes its variables from
    it, by name), with the system directories on PATH where the engine's network helper looks
    for iptables (without them a container with a network cannot start)."""
    path = [d for d in env.get("PATH", "").split(":") if d]
    path += [d for d in _SYSTEM_PATH if d not in path]
    return {**env, "PATH": ":".join(path)}


def submitted_image(
    runtime: str,
    command: Sequence[str] | None,
    image: str | None,
    settings: ContainerSettings,
    where: str = "",
) -> str | None:
    """The image a submitted task records: its own or the settings' default, checked to be on
    this machine (the engine is asked once per task). Raises InvalidTask, one line, when the
    task cannot run: no command, no image, no engine, an image the engine does not have."""
    if runtime != "container":
        if image is not None:
            raise InvalidTask(f"{where}an image is for the container runtime (--runtime container)")
        return None
    if command is None:
        raise InvalidTask(f"{where}the container runtime needs a command (--command)")
    chosen = image or settings.image
    if chosen is None:
        raise InvalidTask(
            f"{where}the container runtime needs an image: --image, `image` in a tasks file, "
            "or `image` in the settings' [container] section"
        )
    if not chosen.strip() or chosen.startswith("-") or any(c.isspace() for c in chosen):
        raise InvalidTask(f"{where}image {chosen!r} is not an image name")
    key = (settings.engine, chosen)
    if time.monotonic() - _images_seen.get(key, -_SEEN_FOR) >= _SEEN_FOR:
        try:
            find_engine(settings.engine).check_image(chosen)
        except ContainerUnavailable as e:
            raise InvalidTask(f"{where}{e}") from None
        _images_seen[key] = time.monotonic()
    return chosen
