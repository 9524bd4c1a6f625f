"""Flight Control's published Python client (``flightctl-client`` on PyPI) against our server:
it creates, lists, reads and deletes an AuthProvider with its own generated models, which
must parse every answer. It runs in a virtual environment of its own
(tests/published_client/, made by scripts/install-test-deps.sh): its top-level package is
named ``flightctl``, like ours."""

from __future__ import annotations

import json
import subprocess
from pathlib import Path

CLIENT = Path(__file__).resolve().parents[1] / "published_client"
PYTHON = CLIENT / ".venv" / "bin" / "python"


def test_the_published_client_manages_authproviders(server):
    if not PYTHON.exists():
        raise RuntimeError("the published client is not installed: run "
                           "scripts/install-test-deps.sh")
    done = subprocess.run([str(PYTHON), str(CLIENT / "authproviders.py"), server.url,
                           str(server.ca), server.token, "https://idp.example.com/realms/x"],
                          capture_output=True, text=True, timeout=120, cwd=CLIENT)
    assert done.returncode == 0, done.stderr[-3000:]
    seen = json.loads(done.stdout)
    created = seen["created"]
    assert created["metadata"]["name"] == "published"
    assert created["spec"]["providerType"] == "oidc"
    assert created["spec"]["clientSecret"] == "*****"  # never the secret itself
    assert created["spec"]["roleAssignment"]["claimPath"] == ["groups"]
    assert "published" in seen["listed"]
    assert seen["read"]["spec"]["issuer"] == "https://idp.example.com/realms/x"
    assert seen["deleted"]["code"] == 200
    assert seen["after_delete"] == 404
    assert server.api("GET", "authproviders/published").status_code == 404
