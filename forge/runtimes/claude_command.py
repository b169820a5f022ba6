"""How a Claude Code attempt is launched: the binary, its command line and its environment.

Pure functions over their arguments (the process environment is passed in, never read here):

* `find_claude_binary`: the configured path, else `claude` on PATH, else the binary bundled in
  the `claude-agent-sdk` wheel (located without importing the SDK);
* `build_argv`: `claude -p … --output-format stream-json --verbose --session-id=<uuid>` on a
  first attempt, `--resume=<uuid>` on a retry of a session that exists, plus the task's options;
* `agent_environment`: the allow-listed task environment plus the variables Claude Code needs
  to authenticate and to reach its API, without `CLAUDECODE`;
* `display_argv`: the command line as it may be shown (secret-bearing values masked).
"""

from __future__ import annotations

import importlib.util
import os
import shutil
import uuid
from collections.abc import Mapping
from pathlib import Path

from actors.runtime import TaskSpec
from events.errors import ForgeError
from events.redact import MASK, redact
from forge.approvals.launch import PROMPT_TOOL

__all__ = [
    "APPROVAL_TOOL",
    "AUTH_VARIABLES",
    "SECRET_VARIABLES",
    "ClaudeNotFound",
    "agent_environment",
    "build_argv",
    "display_argv",
    "find_claude_binary",
    "secret_names",
]


APPROVAL_TOOL = PROMPT_TOOL
"""What `--permission-prompt-tool` names: the approval server's tool."""


class ClaudeNotFound(ForgeError):
    """Raised when no Claude Code binary is configured, on PATH, or bundled with the SDK."""


# Variables whose values are credentials: never shown, masked in the attempt's log.
SECRET_VARIABLES = frozenset(
    {
        "ANTHROPIC_API_KEY",
        "ANTHROPIC_AUTH_TOKEN",
        "ANTHROPIC_CUSTOM_HEADERS",
        "ANTHROPIC_FOUNDRY_API_KEY",
        "CLAUDE_CODE_OAUTH_TOKEN",
        "AWS_ACCESS_KEY_ID",
        "AWS_SECRET_ACCESS_KEY",
        "AWS_SESSION_TOKEN",
        "AWS_BEARER_TOKEN_BEDROCK",
    }
)

# What Claude Code reads to choose a provider, authenticate and reach the API.
AUTH_VARIABLES = SECRET_VARIABLES | {
    "ANTHROPIC_BASE_URL",
    "ANTHROPIC_BEDROCK_BASE_URL",
    "ANTHROPIC_VERTEX_BASE_URL",
    "ANTHROPIC_VERTEX_PROJECT_ID",
    "ANTHROPIC_FOUNDRY_RESOURCE",
    "ANTHROPIC_FOUNDRY_BASE_URL",
    "CLAUDE_CODE_USE_BEDROCK",
    "CLAUDE_CODE_USE_VERTEX",
    "CLAUDE_CODE_USE_FOUNDRY",
    "CLAUDE_CODE_SKIP_BEDROCK_AUTH",
    "CLAUDE_CODE_SKIP_VERTEX_AUTH",
    "CLAUDE_CONFIG_DIR",
    "AWS_REGION",
    "AWS_PROFILE",
    "CLOUD_ML_REGION",
    "GOOGLE_APPLICATION_CREDENTIALS",
    "HTTPS_PROXY",
    "HTTP_PROXY",
    "NO_PROXY",
}

# Claude Code's own tuning knobs (retries, timeouts, traffic) pass through as well.
_PASSED_PREFIXES = ("CLAUDE_CODE_",)
_PASSED_NAMES = frozenset(
    {"API_TIMEOUT_MS", "DISABLE_TELEMETRY", "DISABLE_ERROR_REPORTING", "MAX_THINKING_TOKENS"}
)
_NEVER_PASSED = frozenset({"CLAUDECODE"})  # would make the agent think it runs inside Claude Code


def find_claude_binary(configured: str | None, search_path: str | None) -> str:
    """The Claude Code executable to run; `search_path` is the PATH to look in.

    Raises `ClaudeNotFound` when the configured one is missing, or none is found at all.
    """
    if configured:
        candidate = Path(configured).expanduser()
        if candidate.parent != Path():
            if candidate.is_file() and os.access(candidate, os.X_OK):
                return str(candidate)
            raise ClaudeNotFound(f"runtime.claude_binary {configured!r} is not an executable file")
        found = shutil.which(configured, path=search_path)
        if found is None:
            raise ClaudeNotFound(f"runtime.claude_binary {configured!r} is not on PATH")
        return found
    found = shutil.which("claude", path=search_path)
    if found is not None:
        return found
    bundled = bundled_binary()
    if bundled is not None:
        return bundled
    raise ClaudeNotFound(
        "Claude Code not found: set runtime.claude_binary, put `claude` on PATH, "
        "or install forge[claude] (the claude-agent-sdk wheel bundles it)"
    )


def bundled_binary() -> str | None:
    """The `claude` binary shipped in the claude-agent-sdk wheel, if that is installed."""
    try:
        spec = importlib.util.find_spec("claude_agent_sdk")
    except (ImportError, ValueError):
        return None
    if spec is None or not spec.submodule_search_locations:
        return None
    for location in spec.submodule_search_locations:
        binary = Path(location) / "_bundled" / "claude"
        if binary.is_file() and os.access(binary, os.X_OK):
            return str(binary)
    return None


def session_for(spec: TaskSpec) -> tuple[str, bool]:
    """The session id of an attempt and whether it resumes it (a new id if the task has none)."""
    if spec.session_id:
        return spec.session_id, spec.resume
    return str(uuid.uuid4()), False


def build_argv(
    binary: str,
    spec: TaskSpec,
    default_model: str | None = None,
    approval_config: str | None = None,
) -> list[str]:
    """The command line of one attempt (no shell; the prompt is the last argument).

    `approval_config` is the `--mcp-config` file of Forge's approval server: then the calls the
    permission rules leave open are asked of it (`--permission-prompt-tool`)."""
    if spec.prompt is None:
        raise ForgeError(f"task {spec.task_id}: the claude runtime needs a prompt")
    session_id, resume = session_for(spec)
    argv = [binary, "-p", "--output-format", "stream-json", "--verbose"]
    argv.append(f"--resume={session_id}" if resume else f"--session-id={session_id}")
    model = spec.model or default_model
    if model:
        argv += ["--model", model]
    if spec.max_turns is not None:
        argv += ["--max-turns", str(spec.max_turns)]
    if spec.budget_usd is not None:
        argv += ["--max-budget-usd", f"{spec.budget_usd:g}"]
    if spec.allowed_tools:
        argv += ["--allowedTools", ",".join(spec.allowed_tools)]
    if spec.disallowed_tools:
        argv += ["--disallowedTools", ",".join(spec.disallowed_tools)]
    if spec.permission_mode:
        argv += ["--permission-mode", spec.permission_mode]
    for directory in spec.add_dirs:  # one flag each: --add-dir takes several values
        argv += ["--add-dir", directory]
    if spec.append_system_prompt:
        argv += ["--append-system-prompt", spec.append_system_prompt]
    if spec.mcp_config:
        argv += ["--mcp-config", spec.mcp_config]
    if approval_config:
        argv += ["--mcp-config", approval_config, "--permission-prompt-tool", APPROVAL_TOOL]
    # `--` ends the options: a prompt starting with "-" is not taken for a flag, and
    # variadic options such as --allowedTools cannot swallow it.
    return [*argv, "--", spec.prompt]


def _passed(name: str) -> bool:
    return name in AUTH_VARIABLES or name in _PASSED_NAMES or name.startswith(_PASSED_PREFIXES)


def agent_environment(
    task_env: Mapping[str, str], process_env: Mapping[str, str], cwd: str | None = None
) -> dict[str, str]:
    """The agent's environment: what Claude Code needs from `process_env`, then `task_env`.

    `task_env` has already been filtered by the settings' allow-list; its values win.
    """
    env = {k: v for k, v in process_env.items() if _passed(k)}
    env.update(task_env)
    for name in _NEVER_PASSED:
        env.pop(name, None)
    if cwd is not None:
        env["PWD"] = cwd
    return env


def secret_names(env: Mapping[str, str]) -> list[str]:
    """The variables of `env` whose values must be masked wherever they could appear."""
    return sorted(name for name in env if name in SECRET_VARIABLES and env[name])


_SECRET_OPTIONS = frozenset({"--mcp-config", "--settings"})
_PROMPT_CHARS = 80


def display_argv(argv: list[str]) -> list[str]:
    """`argv` fit for a log line: secret-bearing option values masked, the prompt shortened."""
    shown: list[str] = []
    previous = ""
    for index, arg in enumerate(argv):
        if previous in _SECRET_OPTIONS:
            shown.append(MASK)
        elif previous == "--" and index == len(argv) - 1 and len(arg) > _PROMPT_CHARS:
            shown.append(redact(arg[: _PROMPT_CHARS - 1]) + "…")
        else:
            shown.append(redact(arg))
        previous = arg
    return shown
