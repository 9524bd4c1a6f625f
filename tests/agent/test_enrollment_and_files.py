"""A device enrolls with a file key, receives inline files and reports that it is up to date."""

from __future__ import annotations

import base64
import json
import os
import stat

from tests.net import wait_for


def test_a_device_enrolls_with_a_file_key_and_applies_inline_files(make_agent, server, render):
    agent = make_agent()
    name = agent.enroll(labels={"site": "lab"})

    key = agent.path("/var/lib/flightctl/certs/agent.key")
    assert stat.S_IMODE(key.stat().st_mode) == 0o600
    assert stat.S_IMODE(agent.path("/var/lib/flightctl/certs/agent.crt").stat().st_mode) == 0o600
    assert not agent.path("/var/lib/flightctl/certs/agent.csr").exists()
    er = server.get(f"/api/v1/enrollmentrequests/{name}").json()
    assert er["spec"]["deviceStatus"]["systemInfo"]["agentVersion"]
    assert agent.path("/etc/issue.d/flightctl-banner.issue").read_text().count(f"/enroll/{name}")

    version = render(name, {"config": [{"name": "rendered", "inline": [
        {"path": "/etc/motd", "content": "This system is managed by flightctl."},
        {"path": "/etc/app/secret.conf", "content": base64.b64encode(b"s3cret").decode(),
         "contentEncoding": "base64", "mode": 0o600, "user": "nobody", "group": "nogroup"},
        {"path": "/etc/app/run.sh", "content": "#!/bin/sh\n", "mode": 493},
    ]}]})
    status = agent.wait_rendered_version(version)

    assert agent.path("/etc/motd").read_text() == "This system is managed by flightctl."
    secret = agent.path("/etc/app/secret.conf")
    assert secret.read_bytes() == b"s3cret"
    st = secret.stat()
    assert stat.S_IMODE(st.st_mode) == 0o600
    if os.geteuid() == 0:
        import grp
        import pwd
        assert (st.st_uid, st.st_gid) == (pwd.getpwnam("nobody").pw_uid,
                                          grp.getgrnam("nogroup").gr_gid)
    assert stat.S_IMODE(agent.path("/etc/app/run.sh").stat().st_mode) == 0o755
    updating = next(c for c in status["conditions"] if c["type"] == "Updating")
    assert (updating["status"], updating["reason"]) == ("False", "Updated")
    assert updating["message"] == f"Updated to desired renderedVersion: {version}"
    wait_for(lambda: agent.status().get("updated", {}).get("status") == "UpToDate", 30,
             what="UpToDate")
    assert agent.status()["summary"]["status"] == "Online"
    # Enrolled, the agent runs light: its key was made and used in a child process.
    assert not agent.maps_library("cryptography")

    # The next version drops a file and changes another: the obsolete file is removed.
    version = render(name, {"config": [{"name": "rendered", "inline": [
        {"path": "/etc/motd", "content": "changed"}]}]})
    agent.wait_rendered_version(version)
    assert agent.path("/etc/motd").read_text() == "changed"
    assert not secret.exists()
    assert not agent.path("/etc/app/run.sh").exists()

    # Every spec-file write is in the audit log (0600): bootstrap, then each update.
    audit = agent.path("/var/log/flightctl/audit.log")
    assert stat.S_IMODE(audit.stat().st_mode) == 0o600
    entries = [json.loads(line) for line in audit.read_text().splitlines()]
    assert [(e["type"], e["reason"], e["old_version"], e["new_version"]) for e in entries[:3]] \
        == [(kind, "bootstrap", "", "0") for kind in ("current", "desired", "rollback")]
    assert {"type": "desired", "reason": "sync", "new_version": str(version),
            "result": "success", "device": name}.items() <= entries[-3].items()
    assert (entries[-2]["type"], entries[-2]["reason"], entries[-2]["new_version"]) == (
        "current", "upgrade", str(version))
