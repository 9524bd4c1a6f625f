"""The client package stays a client; version, completion and organization settings."""

from __future__ import annotations

import json
import subprocess
import sys
import uuid

import yaml

from flightctl import __version__


def test_importing_the_client_imports_no_server_code():
    code = ("import sys, flightctl.cli.client, flightctl.cli.client.commands\n"
            "bad = [m for m in sys.modules if m.split('.')[0] in "
            "('django', 'rest_framework', 'devices', 'fleets', 'enrollment', 'repos', "
            "'psycopg')\n or m.startswith(('flightctl.api', 'flightctl.models', "
            "'flightctl.settings'))]\n"
            "print(bad)")
    done = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True,
                          check=True, env={"PATH": "/usr/bin:/bin"})
    assert done.stdout.strip() == "[]"


def test_every_command_has_help(fresh_cli):
    out = fresh_cli.ok("--help")
    for command in ("login", "get", "apply", "edit", "delete", "approve", "deny",
                    "decommission", "certificate", "enrollmentconfig", "version", "completion",
                    "rollout", "config", "resume"):
        assert command in out
        assert fresh_cli(command, "--help").code == 0
    for sub in (("rollout", "status"), ("rollout", "pause"), ("certificate", "request"),
                ("config", "set-organization")):
        assert fresh_cli(*sub, "--help").code == 0


def test_version_shows_client_and_server(cli):
    out = cli.ok("version")
    assert f"Client Version: {__version__}" in out and "Server Version: " in out
    assert json.loads(cli.ok("version", "-o", "json"))["clientVersion"] == __version__
    assert "serverVersion" in yaml.safe_load(cli.ok("version", "-o", "yaml"))


def test_completion_scripts(fresh_cli):
    assert "_FLIGHTCTL_COMPLETE" in fresh_cli.ok("completion", "bash")
    assert "compdef" in fresh_cli.ok("completion", "zsh")
    assert "complete" in fresh_cli.ok("completion", "fish")
    # click has no PowerShell completion of its own; a plugin may provide one.
    result = fresh_cli("completion", "powershell")
    assert result.code == 0 or "bash, zsh and fish" in result.err


def test_organization_is_saved_and_sent(cli):
    assert "<none>" in cli.ok("config", "current-organization")
    org = str(uuid.uuid4())
    cli.ok("config", "set-organization", org)
    assert cli.ok("config", "current-organization").strip() == org
    # The server refuses an organization the user is not a member of: org_id was sent.
    assert cli("get", "devices").code != 0
    cli.ok("config", "set-organization", "")
    assert cli("get", "devices").code == 0
