"""``flightctl-agent``: run the agent, or print its version or the device's system info."""

from __future__ import annotations

import json
import os
import sys

import click

from flightctl_agent import __version__
from flightctl_agent import config as config_module


@click.group(invoke_without_command=True)
@click.option("--config", "config_file", type=click.Path(dir_okay=False),
              help="Configuration file (default /etc/flightctl/config.yaml under the root).")
@click.option("--root", type=click.Path(file_okay=False), envvar=config_module.TEST_ROOT_ENV,
              help="A directory standing for / : every device path (/etc/flightctl, "
              "/var/lib/flightctl, config files) lives below it. To try the agent without "
              "root, or run several on one machine. Env: FLIGHTCTL_TEST_ROOT_DIR.")
@click.pass_context
def main(ctx: click.Context, config_file: str | None, root: str | None) -> None:
    """The Flight Control device agent. Without a command it runs the agent."""
    ctx.ensure_object(dict)
    ctx.obj["config_file"] = config_file
    if root:
        # Hooks, stand-ins and child processes see the same root.
        os.environ[config_module.TEST_ROOT_ENV] = os.path.abspath(root)
    if ctx.invoked_subcommand is None:
        ctx.exit(_run(config_file))


def _load(config_file):
    try:
        return config_module.load(config_file)
    except config_module.ConfigError as e:
        click.echo(f"flightctl-agent: invalid configuration: {e}", err=True)
        sys.exit(2)


def _run(config_file) -> int:
    from flightctl_agent.agent import Agent, setup_logging
    from flightctl_agent.identity import IdentityUnavailable

    cfg = _load(config_file)
    setup_logging(cfg)
    for warning in cfg.warnings:
        click.echo(f"flightctl-agent: warning: {warning}", err=True)
    try:
        return Agent(cfg).run()
    except IdentityUnavailable as e:
        click.echo(f"flightctl-agent: {e}", err=True)
        return 2


@main.command()
def version() -> None:
    """Print the agent version."""
    click.echo(f"Agent Version: {__version__}")
    click.echo("Git Commit: unknown")


@main.command("system-info")
@click.pass_context
def system_info(ctx: click.Context) -> None:
    """Print all system information the agent can collect, as JSON."""
    from flightctl_agent import systeminfo

    cfg = _load(ctx.obj.get("config_file"))
    keys = list(config_module.DEFAULT_SYSTEM_INFO) + [
        "biosVendor", "biosVersion", "cpuCores", "cpuProcessors", "memoryTotalKb"]
    info = systeminfo.collect(cfg.paths, keys, cfg.system_info_custom, 120)
    click.echo(json.dumps(info, indent=2, sort_keys=True))


# The simulator's imports (aiohttp) are optional: loaded only when the command runs.
from flightctl_agent.simulator.cli import simulate_command  # noqa: E402

main.add_command(simulate_command)


if __name__ == "__main__":
    main()
