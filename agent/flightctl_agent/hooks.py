"""Lifecycle hooks: commands the device owner wants run around updates (agent.md §8.1).

Hook files are YAML lists of actions under ``/usr/lib/flightctl/hooks.d/<hook>/`` and
``/etc/flightctl/hooks.d/<hook>/`` (a file of the same name in /etc replaces the one in /usr/lib),
run in lexical file-name order. An action runs when all its ``if`` conditions hold; a path
condition matches files the update created, updated or removed.
"""

from __future__ import annotations

import logging
import os
import re
import shlex
import subprocess
from pathlib import Path

import yaml

from flightctl_agent import errors
from flightctl_agent.config import Paths, parse_duration
from flightctl_agent.files import FileDiff

log = logging.getLogger(__name__)

BEFORE_UPDATING = "beforeupdating"
AFTER_UPDATING = "afterupdating"
BEFORE_REBOOTING = "beforerebooting"
AFTER_REBOOTING = "afterrebooting"
HOOK_TYPES = (BEFORE_UPDATING, AFTER_UPDATING, BEFORE_REBOOTING, AFTER_REBOOTING)

_ENV_KEY = re.compile(r"^[A-Z_][A-Z0-9_]*$")
_VARIABLE = re.compile(r"\$\{\s*(Path|Files|CreatedFiles|UpdatedFiles|RemovedFiles|"
                       r"BackupFiles)\s*\}")
_OPS = {"created", "updated", "removed"}


def hook_files(paths: Paths, hook: str) -> list[Path]:
    by_name: dict[str, Path] = {}
    for base in ("/usr/lib/flightctl/hooks.d", "/etc/flightctl/hooks.d"):
        directory = paths(f"{base}/{hook}")
        if directory.is_dir():
            for f in directory.iterdir():
                if f.suffix in (".yaml", ".yml") and f.is_file():
                    by_name[f.name] = f
    return [by_name[n] for n in sorted(by_name)]


def load_actions(path: Path) -> list[dict]:
    actions = yaml.safe_load(path.read_text()) or []
    if not isinstance(actions, list):
        raise ValueError(f"{path.name}: expected a list of actions")
    for action in actions:
        if not isinstance(action, dict) or not action.get("run"):
            raise ValueError(f"{path.name}: every action needs 'run'")
        unknown = set(action) - {"run", "envVars", "workDir", "timeout", "if"}
        if unknown:
            raise ValueError(f"{path.name}: unknown keys {sorted(unknown)}")
        for key, value in (action.get("envVars") or {}).items():
            if not _ENV_KEY.match(key) or not value:
                raise ValueError(f"{path.name}: invalid envVars entry {key!r}")
        for cond in action.get("if") or []:
            if isinstance(cond, dict) and not set(cond.get("op") or []) <= _OPS:
                raise ValueError(f"{path.name}: invalid op {cond.get('op')}")
    return actions


def _matches(cond_path: str, changed: list[str]) -> list[str]:
    if cond_path.endswith("/"):
        return [f for f in changed if f.startswith(cond_path)]
    return [f for f in changed if f == cond_path]


def _evaluate(conditions, diff: FileDiff, rebooted: bool) -> dict | None:
    """Template variables when every condition holds, else None."""
    variables = {"Path": "", "Files": [], "CreatedFiles": [], "UpdatedFiles": [],
                 "RemovedFiles": [], "BackupFiles": []}
    for cond in conditions or []:
        if isinstance(cond, str):
            expr = cond.replace(" ", "")
            if expr == "rebooted==true" and not rebooted:
                return None
            if expr == "rebooted==false" and rebooted:
                return None
            continue
        ops = set(cond.get("op") or [])
        hits = {op: _matches(cond["path"], getattr(diff, op)) for op in ops}
        if not any(hits.values()):
            return None
        variables["Path"] = cond["path"]
        for op, files in hits.items():
            variables[f"{op.capitalize()}Files"] += files
            variables["Files"] += files
    return variables


def _substitute(command: str, variables: dict) -> str:
    def value(match):
        v = variables[match.group(1)]
        return " ".join(v) if isinstance(v, list) else v
    return _VARIABLE.sub(value, command)


def run_hooks(paths: Paths, hook: str, diff: FileDiff | None = None, rebooted: bool = False,
              env: dict | None = None) -> None:
    """Run every action of one hook type whose conditions hold; the first failure raises."""
    diff = diff or FileDiff()
    for path in hook_files(paths, hook):
        try:
            actions = load_actions(path)
        except (OSError, ValueError, yaml.YAMLError) as e:
            raise errors.UpdateError("hooks", str(e), element=str(path),
                                     status_text=errors.INVALID) from e
        for action in actions:
            variables = _evaluate(action.get("if"), diff, rebooted)
            if variables is None:
                continue
            _run(paths, hook, action, variables, env or {})


def _run(paths: Paths, hook: str, action: dict, variables: dict, env: dict) -> None:
    command = _substitute(action["run"], variables)
    argv = shlex.split(command)
    timeout = parse_duration(action.get("timeout", "10s"), "timeout")
    workdir = action.get("workDir")
    if workdir and not Path(workdir).is_dir():
        raise errors.UpdateError("hooks", f"workDir {workdir} does not exist", element=command,
                                 status_text=errors.INVALID)
    full_env = {**os.environ, **env, **(action.get("envVars") or {}),
                "FLIGHTCTL_AGENT_PID": str(os.getpid())}
    try:
        result = subprocess.run(argv, cwd=workdir or None, env=full_env, capture_output=True,
                                text=True, timeout=timeout)
    except subprocess.TimeoutExpired as e:
        raise errors.UpdateError("hooks", f"{hook} hook timed out after {timeout:g}s",
                                 element=command, status_text=errors.UNAVAILABLE) from e
    except OSError as e:
        raise errors.UpdateError("hooks", f"{hook} hook: {e}", element=command,
                                 status_text=errors.NOT_FOUND) from e
    if result.returncode != 0:
        raise errors.UpdateError(
            "hooks", f"{hook} hook exited with {result.returncode}: {result.stderr.strip()}",
            element=command, status_text=errors.INVALID)
    log.info("Hook %s executed %r without error", hook, command)
