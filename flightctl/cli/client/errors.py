"""Failures the command line reports as one line on stderr (never as a traceback)."""

from __future__ import annotations

import yaml


class CliError(Exception):
    """A failure to report as ``Error: <message>`` with a non-zero exit ``code``."""

    def __init__(self, message: str, code: int = 1):
        super().__init__(message)
        self.message = message
        self.code = code


def yaml_problem(exc: yaml.YAMLError) -> str:
    """One line out of a PyYAML error: the problem and where it is."""
    mark = getattr(exc, "problem_mark", None)
    problem = getattr(exc, "problem", None) or str(exc).splitlines()[0]
    if mark is not None:
        return f"{problem} at line {mark.line + 1}, column {mark.column + 1}"
    return problem
