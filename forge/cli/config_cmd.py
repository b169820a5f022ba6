"""`forge config show|validate|init`."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import click

from forge.cli.app import App, echo_data, json_option, pass_app
from forge.errors import ConfigError
from forge.private_files import private_directory, write_private
from forge.settings import forge_home, load_settings, validate_file
from forge.settings_docs import default_config_text

__all__ = ["config"]


@click.group()
def config() -> None:
    """Show, check and create the settings file."""


def _render(data: dict[str, Any]) -> str:
    lines = [f"home = {data['home']}"]
    for section, values in data.items():
        if isinstance(values, dict):
            lines.append(f"\n[{section}]")
            lines += [f"{name} = {value!r}" for name, value in values.items()]
    return "\n".join(lines)


@config.command("show")
@json_option
@pass_app
def show(app: App, as_json: bool) -> None:
    """Print the effective settings (file, environment and flags merged), secrets masked."""
    echo_data(app.settings.redacted(), as_json, _render)


@config.command("validate")
@click.argument("file", required=False, type=click.Path(dir_okay=False, path_type=Path))
@pass_app
def validate(app: App, file: Path | None) -> None:
    """Check a settings file (default: the effective settings) and list every problem."""
    if file is not None:
        problems = validate_file(file)
        source = str(file)
    else:
        try:
            load_settings(app.config_file, app.overrides)
            problems, source = [], "effective settings"
        except ConfigError as e:
            problems, source = e.problems, e.source or "effective settings"
    if problems:
        for problem in problems:
            click.echo(f"{source}: {problem}", err=True)
        raise click.exceptions.Exit(1)
    click.echo(f"{source}: valid")


@config.command("init")
@click.argument("file", required=False, type=click.Path(dir_okay=False, path_type=Path))
@click.option("--force", is_flag=True, help="Overwrite an existing file.")
def init(file: Path | None, force: bool) -> None:
    """Write a commented file holding every default (default: $FORGE_HOME/config.toml)."""
    target = file or forge_home() / "config.toml"
    if target.exists() and not force:
        raise click.ClickException(f"{target} already exists (use --force to overwrite it)")
    private_directory(target.parent)
    write_private(target, default_config_text().encode())  # 0600: it may hold redis.password
    click.echo(f"wrote {target}")
