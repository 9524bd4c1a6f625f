"""What an agent API process owes the database when it stops: the last-seen times it buffered
(devices.services.LastSeenBuffer) are written before it exits, so another node serving the
devices next does not judge them by times this process never wrote (docs/deploy-multihost.md)."""

from __future__ import annotations

import signal

import pytest

from tests.test_agent_api import enroll
from tests.tpm_support import agent_api_server

pytestmark = pytest.mark.django_db(transaction=True)


def test_a_stopping_agent_api_writes_the_last_seen_times_it_buffered(api, tmp_path):
    from devices.models import Device

    with agent_api_server(tmp_path / "agent-api") as server:
        agent, name, _ = enroll(api, server, tmp_path)
        Device.objects.filter(name=name).update(last_seen=None)
        # Buffered in memory by the process (the flusher writes once a second) ...
        agent.get(f"/api/v1/devices/{name}/rendered", params={"knownRenderedVersion": 0},
                  timeout=10)
        # ... and the stop comes at once.
        server.process.send_signal(signal.SIGTERM)
        server.process.wait(20)  # uvicorn ends by re-raising the signal it handled
    assert Device.objects.get(name=name).last_seen is not None
