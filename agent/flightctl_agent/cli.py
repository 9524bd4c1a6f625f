"""``flightctl-agent``: run the agent, or print its version or the device's system info.

Most of the time the command runs the agent, with at most ``--config`` and ``--root``: that
path is taken here without click, which would otherwise stay loaded for the agent's whole life
(~2 MB of RSS, docs/scale.md, "Sixth round: the agent's footprint"). Everything else (a
command, ``--help``, a malformed option) goes to click, in ``flightctl_agent.commands``.
"""

from __future__ import annotations

import os
import sys

from flightctl_agent import config as config_module

_AGENT_OPTIONS = ("--config", "--root")


def main(argv: list[str] | None = None) -> int:
    args = sys.argv[1:] if argv is None else list(argv)
    options = _agent_options(args)
    if options is None:
        from flightctl_agent.commands import main as commands

        return commands(args=args)
    config_file, root = options
    use_root(root if root is not None else os.environ.get(config_module.TEST_ROOT_ENV))
    return run(config_file)


def _agent_options(args: list[str]) -> tuple[str | None, str | None] | None:
    """(config file, root) when ``args`` only run the agent and click would accept them as
    they are; None for anything else, which click then handles (or explains)."""
    found: dict[str, str] = {}
    rest = iter(args)
    for arg in rest:
        name, equals, value = arg.partition("=")
        if name not in _AGENT_OPTIONS:
            return None
        if not equals:
            value = next(rest, None)
            if value is None:
                return None
        found[name] = value
    config_file, root = found.get("--config"), found.get("--root")
    if (config_file is not None and os.path.isdir(config_file)) or (
            root is not None and os.path.isfile(root)):
        return None  # click's own message says what is wrong
    return config_file, root


def use_root(root: str | None) -> None:
    if root:
        # Hooks, stand-ins and child processes see the same root.
        os.environ[config_module.TEST_ROOT_ENV] = os.path.abspath(root)


def load(config_file):
    try:
        return config_module.load(config_file)
    except config_module.ConfigError as e:
        print(f"flightctl-agent: invalid configuration: {e}", file=sys.stderr)
        sys.exit(2)


def run(config_file) -> int:
    from flightctl_agent.agent import Agent, setup_logging
    from flightctl_agent.identity import IdentityUnavailable

    cfg = load(config_file)
    setup_logging(cfg)
    for warning in cfg.warnings:
        print(f"flightctl-agent: warning: {warning}", file=sys.stderr)
    try:
        return Agent(cfg).run()
    except IdentityUnavailable as e:
        print(f"flightctl-agent: {e}", file=sys.stderr)
        return 2


if __name__ == "__main__":
    sys.exit(main())
