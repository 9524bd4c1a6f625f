"""Failures the command line reports as one line on stderr (never as a traceback)."""

from __future__ import annotations

import yaml

# Exit codes every command shares (docs/cli.md, "Errors"); ``rollout status`` adds its own.
EXIT_FAILED = 1
EXIT_USAGE = 2
EXIT_UNREACHABLE = 4


class CliError(Exception):
    """A failure to report as ``Error: <message>`` with a non-zero exit ``code``."""

    def __init__(self, message: str, code: int = 1):
        super().__init__(message)
        self.message = message
        self.code = code


class ServerUnreachable(CliError):
    """No answer from the server (refused, dropped, timed out) after the retries: exit 4, so a
    script can tell "the server is away" from "the server said no"."""

    def __init__(self, message: str):
        super().__init__(message, EXIT_UNREACHABLE)


def yaml_problem(exc: yaml.YAMLError) -> str:
    """One line out of a PyYAML error: the problem and where it is."""
    mark = getattr(exc, "problem_mark", None)
    problem = getattr(exc, "problem", None) or str(exc).splitlines()[0]
    if mark is not None:
        return f"{problem} at line {mark.line + 1}, column {mark.column + 1}"
    return problem
