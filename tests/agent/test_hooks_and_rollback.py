"""Lifecycle hooks around updates, and rollback of files when an update fails midway."""

from __future__ import annotations

import json

import yaml

from tests.net import wait_for


def inline(*files) -> dict:
    return {"config": [{"name": "rendered", "inline": list(files)}]}


def wait_error(agent) -> dict:
    return wait_for(lambda: (c := agent.condition()).get("reason") == "Error" and c, 90,
                    what="Updating=False/Error")


def test_a_failing_before_updating_hook_aborts_the_update_with_nothing_changed(
        make_agent, render, tmp_path):
    agent = make_agent()
    name = agent.enroll()
    record = tmp_path / "after.txt"
    hook = [{"if": [{"path": "/etc/watched/", "op": ["created", "updated"]}],
             "run": f"/bin/sh -c 'echo ${{ Path }} ${{ Files }} >> {record}'"}]
    version = render(name, inline(
        {"path": "/etc/flightctl/hooks.d/afterupdating/10-record.yaml",
         "content": yaml.safe_dump(hook)},
        {"path": "/etc/watched/a.conf", "content": "one"}))
    agent.wait_rendered_version(version)
    # The hook file arrived with this very update and ran after it (lexical, after files).
    assert record.read_text().split() == ["/etc/watched/", "/etc/watched/a.conf"]

    version = render(name, inline(
        {"path": "/etc/flightctl/hooks.d/afterupdating/10-record.yaml",
         "content": yaml.safe_dump(hook)},
        {"path": "/etc/flightctl/hooks.d/beforeupdating/fail-hook.yaml",
         "content": "- run: /bin/false\n"},
        {"path": "/etc/watched/a.conf", "content": "one"}))
    agent.wait_rendered_version(version)

    failed = render(name, inline(
        {"path": "/etc/flightctl/hooks.d/beforeupdating/fail-hook.yaml",
         "content": "- run: /bin/false\n"},
        {"path": "/etc/watched/a.conf", "content": "two"}))
    condition = wait_error(agent)
    assert "While Preparing: hooks failed for /bin/false" in condition["message"]
    assert agent.status()["config"]["renderedVersion"] == str(version)
    assert agent.path("/etc/watched/a.conf").read_text() == "one"
    assert agent.path("/etc/flightctl/hooks.d/afterupdating/10-record.yaml").exists()
    assert failed == version + 1


def test_a_failure_after_files_were_written_rolls_them_back(make_agent, render):
    agent = make_agent()
    name = agent.enroll()
    version = render(name, inline({"path": "/etc/app/a.conf", "content": "old a"},
                                  {"path": "/etc/app/keep.conf", "content": "kept"}))
    agent.wait_rendered_version(version)

    render(name, inline({"path": "/etc/app/a.conf", "content": "new a"},
                        {"path": "/etc/app/c.conf", "content": "created"},
                        {"path": "/etc/app/b.conf", "content": "b",
                         "user": "nonexistent-user-xyz"}))
    condition = wait_error(agent)
    assert ("While ApplyingUpdate: config failed for /etc/app/b.conf: required resource not "
            "found") in condition["message"]
    assert agent.path("/etc/app/a.conf").read_text() == "old a"
    assert agent.path("/etc/app/keep.conf").read_text() == "kept"
    assert not agent.path("/etc/app/c.conf").exists()
    assert not agent.path("/etc/app/b.conf").exists()
    assert agent.status()["config"]["renderedVersion"] == str(version)
    # The failed version is not retried, but a newer one is applied.
    version = render(name, inline({"path": "/etc/app/a.conf", "content": "newer a"}))
    agent.wait_rendered_version(version)
    assert agent.path("/etc/app/a.conf").read_text() == "newer a"
    assert not agent.path("/etc/app/keep.conf").exists()
    failed = json.loads(agent.path("/var/lib/flightctl/failed-versions.json").read_text())
    assert failed["versions"] == [version - 1]


def test_a_failing_after_updating_hook_restores_the_previous_files(make_agent, render):
    agent = make_agent()
    name = agent.enroll()
    version = render(name, inline({"path": "/etc/svc/config", "content": "good"}))
    agent.wait_rendered_version(version)
    render(name, inline(
        {"path": "/etc/svc/config", "content": "bad"},
        {"path": "/etc/flightctl/hooks.d/afterupdating/check.yaml",
         "content": yaml.safe_dump([{"if": [{"path": "/etc/svc/", "op": ["updated"]}],
                                     "run": "/bin/sh -c 'exit 3'"}])}))
    condition = wait_error(agent)
    assert "While Rebooting: hooks failed" in condition["message"] or \
        "hooks failed" in condition["message"]
    assert agent.path("/etc/svc/config").read_text() == "good"
    assert not agent.path("/etc/flightctl/hooks.d/afterupdating/check.yaml").exists()
