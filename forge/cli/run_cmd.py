"""`forge run FILE | --prompt ... | --command ...`: a one-shot batch without a daemon."""

from __future__ import annotations

import re
import secrets
import time
from pathlib import Path
from typing import Any

import click

from events.store import EventStore
from forge.batch import run_batch
from forge.cli.app import App, echo_data, json_option, pass_app
from forge.cli.isolation_opts import isolation_fields, isolation_options
from forge.cli.permission_opts import permission_fields, permission_options
from forge.cli.progress import Progress, summary, summary_data
from forge.daemon import build_runtimes, node_id, orchestrator_config, workspaces
from forge.daemon_process import DaemonFiles
from forge.log import configure_logging
from forge.settings import NAMESPACE_PATTERN
from forge.submit import plan
from forge.task_request import TaskRequest, read_tasks_file

__all__ = ["run"]


def _namespace(value: str | None) -> str | None:
    if value is not None and not re.match(NAMESPACE_PATTERN, value):
        raise click.BadParameter(f"{value[:80]!r} is not 1-64 letters, digits, '_', '.' or '-'")
    return value


@click.command()
@click.argument(
    "file", required=False, type=click.Path(exists=True, dir_okay=False, path_type=Path)
)
@click.option("--prompt", "prompts", multiple=True, help="A claude task (repeatable).")
@click.option(
    "--command",
    "commands",
    multiple=True,
    help="A shell task, run by /bin/sh -c (repeatable: one task each).",
)
@click.option("--runtime", help="Runtime of the --prompt/--command tasks.")
@click.option(
    "--image", help="Image of the --command tasks of the container runtime ([container] image)."
)
@click.option(
    "--agents", type=click.IntRange(1, 1000), help="Agents at most (default: the settings')."
)
@click.option(
    "--namespace",
    callback=lambda ctx, param, value: _namespace(value),
    help="Log namespace of the batch (default: a fresh run-… one).",
)
@click.option("--repo", help="Git repository the --prompt tasks work in (a worktree each).")
@click.option("--model", help="Model of the --prompt tasks.")
@click.option(
    "--budget-usd", type=click.FloatRange(0), help="Spend limit of each --prompt task, in USD."
)
@permission_options
@isolation_options
@json_option
@pass_app
def run(
    app: App,
    /,
    file: Path | None,
    prompts: tuple[str, ...],
    commands: tuple[str, ...],
    runtime: str | None,
    image: str | None,
    agents: int | None,
    namespace: str | None,
    as_json: bool,
    repo: str | None,
    model: str | None,
    budget_usd: float | None,
    **flags: Any,
) -> None:
    """Run a batch of tasks to the end in this process, with a live display, then print a
    summary. Exits 0 only if every task completed.

    The batch has its own log namespace (printed), so it neither sees nor disturbs the tasks of
    a daemon; inspect it afterwards with FORGE_REDIS_NAMESPACE=<namespace> forge events ...
    """
    requests = read_tasks_file(file) if file is not None else []
    claude = {"repo": repo, "model": model, "budget_usd": budget_usd, **permission_fields(flags)}
    if not prompts and any(v is not None for v in claude.values()):
        raise click.UsageError(
            "--repo, --model, --budget-usd and the permission options apply to --prompt tasks"
        )
    isolation = isolation_fields(flags)  # for --prompt and --command tasks alike
    requests += [TaskRequest(prompt=p, runtime=runtime, **claude, **isolation) for p in prompts]
    requests += [
        TaskRequest(command=c, runtime=runtime, image=image, **isolation) for c in commands
    ]
    if not requests:
        raise click.UsageError("give a tasks FILE, --prompt or --command")
    if app.overrides.get("logging.level") is None:  # the live display is the output
        configure_logging("warning", app.settings.logging.format)
    ns = namespace or f"run-{time.strftime('%Y%m%d-%H%M%S')}-{secrets.token_hex(2)}"
    store = EventStore(app.redis, ns)
    planned = plan(store, requests, app.settings)
    if not as_json:
        click.echo(
            f"namespace: {ns}   tasks: {len(planned)}   agents: at most "
            f"{agents or app.settings.orchestrator.max_concurrent_agents}"
        )
    ids_in_order = [p.task_id for p in sorted(planned, key=lambda p: p.index)]
    config = orchestrator_config(app.settings, node_id(DaemonFiles(app.settings.home_path)), agents)
    result = run_batch(
        store,
        build_runtimes(app.settings),
        config,
        planned,
        None if as_json else Progress(ids_in_order),
        workspaces(app.settings),
    )
    if as_json:
        echo_data({"namespace": ns, "ok": result.ok, "tasks": summary_data(result)}, True, str)
    else:
        click.echo("")
        click.echo(summary(result))
    if not result.ok:
        raise click.exceptions.Exit(1)
