"""``flightctl-agent``'s commands (click): the agent's options and help, ``version``,
``system-info`` and ``simulate``. Running the agent itself usually does not come through here:
``flightctl_agent.cli.main`` starts it without loading click."""

from __future__ import annotations

import json

import click

from flightctl_agent import __version__, cli
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
    cli.use_root(root)
    if ctx.invoked_subcommand is None:
        ctx.exit(cli.run(config_file))


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

    cfg = cli.load(ctx.obj.get("config_file"))
    keys = list(config_module.DEFAULT_SYSTEM_INFO) + [
        "biosVendor", "biosVersion", "cpuCores", "cpuProcessors", "memoryTotalKb"]
    info = systeminfo.collect(cfg.paths, keys, cfg.system_info_custom, 120)
    click.echo(json.dumps(info, indent=2, sort_keys=True))


# The simulator's imports (aiohttp) are optional: loaded only when the command runs.
from flightctl_agent.simulator.cli import simulate_command  # noqa: E402

main.add_command(simulate_command)
