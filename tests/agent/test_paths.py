"""The agent never writes its own configuration or keys, whatever path spelling a rendered spec
uses: every path is normalized before any prefix is compared, and one that is not normalized
is refused outright (the server checks too, but the agent does not rely on it)."""

from __future__ import annotations

import pytest

from tests.agent.test_hooks_and_rollback import inline, wait_error

SNEAKY_PATHS = [
    "/etc/flightctl/./config.yaml",
    "/etc/flightctl//config.yaml",
    "/etc/x/../flightctl/config.yaml",
    "/var/lib//flightctl/certs/agent.key",
    "/var/lib/flightctl/./certs/agent.key",
    "/etc/flightctl/certs/../../flightctl/certs/x",
    "//var/lib/flightctl/certs/agent.key",
    "/var/lib/flightctl/certs/agent.key/",
]


@pytest.mark.parametrize("path", SNEAKY_PATHS)
def test_a_path_that_is_not_normalized_is_refused(path):
    from flightctl_agent import errors, files

    with pytest.raises(errors.UpdateError, match="forbidden device path"):
        files.check_path(path)


@pytest.mark.parametrize("path", ["../../etc/flightctl/config.yaml", "/etc/flightctl/config.yaml",
                                  "a/../../x", "a//b", ".", ""])
def test_an_application_file_may_not_leave_its_directory(path):
    from flightctl_agent import errors, files

    with pytest.raises(errors.UpdateError, match="invalid application file path"):
        files.check_relative_path(path, "applications", "app")


def test_ordinary_paths_are_still_written():
    from flightctl_agent import files

    files.check_path("/etc/flightctl/hooks.d/afterupdating/10-x.yaml")
    files.check_path("/etc/app/a.conf")
    for path in ("docker-compose.yaml", "./podman-compose.yaml", "conf/app.env"):
        files.check_relative_path(path, "applications", "app")


def test_a_rendered_spec_aimed_at_the_agents_own_files_changes_nothing(make_agent, render):
    agent = make_agent()
    name = agent.enroll()
    config = agent.path("/etc/flightctl/config.yaml")
    key = agent.path("/var/lib/flightctl/certs/agent.key")
    before = config.read_bytes(), key.read_bytes()
    good = render(name, inline({"path": "/etc/motd", "content": "one"}))
    agent.wait_rendered_version(good)

    render(name, inline({"path": "/etc/motd", "content": "two"},
                        {"path": "/etc/flightctl/./config.yaml", "content": "pwned: true\n"},
                        {"path": "/var/lib//flightctl/certs/agent.key", "content": "pwned"}))
    condition = wait_error(agent)
    assert "config failed for /etc/flightctl/./config.yaml: invalid" in condition["message"]
    assert (config.read_bytes(), key.read_bytes()) == before
    assert agent.path("/etc/motd").read_text() == "one"  # refused before anything was written
    assert agent.status()["config"]["renderedVersion"] == str(good)
