"""Console sessions whose server processes died with both ends: their rows and the device's
``device-controller/console`` annotation expire (devices.console.sessions.expire_stale, run by
the ``console-cleanup`` job), and only theirs: a live holder keeps refreshing its rows."""

from __future__ import annotations

import asyncio
import json
import uuid
from datetime import timedelta

import pytest
from django.conf import settings
from django.db import connection
from django.utils import timezone

from devices.console import sessions
from devices.console.websocket import Held
from devices.models import ConsoleSession, Device
from devices.tasks import clean_console_sessions
from flightctl.api.annotations import DEVICE_CONSOLE
from flightctl.models import DEFAULT_ORG_ID, Event


@pytest.fixture
def device(api):
    r = api.put("/api/v1/devices/console-dev", {
        "apiVersion": "v1beta1", "kind": "Device", "metadata": {"name": "console-dev"},
        "spec": {}}, format="json")
    assert r.status_code in (200, 201), r.content
    return "console-dev"


def _open(name: str) -> str:
    session = sessions.open_session(DEFAULT_ORG_ID, name, '{"tty":true}', actor="user:ops",
                                    bridge="127.0.0.1:1", session_id=uuid.uuid4(),
                                    stale_after=120)
    return str(session.id)


def _listed(name: str) -> list[str]:
    annotations = Device.objects.get(name=name).annotations or {}
    return [s["sessionID"] for s in json.loads(annotations.get(DEVICE_CONSOLE) or "[]")]


def _age(session_id: str, seconds: float) -> None:
    ConsoleSession.objects.filter(id=session_id).update(
        seen_at=timezone.now() - timedelta(seconds=seconds))


def test_a_session_nobody_holds_expires_with_its_listing_and_an_event(device, monkeypatch):
    monkeypatch.setattr(settings.FLIGHTCTL, "console_session_timeout", "60s")
    dead, alive = _open(device), _open(device)
    sessions.mark_connected(dead)  # it had been bridged: its processes died mid-session
    _age(dead, 121)  # not refreshed for more than twice the timeout
    _age(alive, 100)  # refreshed recently enough
    assert set(_listed(device)) == {dead, alive}

    clean_console_sessions()

    assert list(ConsoleSession.objects.values_list("id", flat=True)) == [uuid.UUID(alive)]
    assert _listed(device) == [alive]
    closed = Event.objects.filter(involved_name=device, reason=sessions.CLOSED).get()
    assert dead in closed.message and "expired" in closed.message
    assert "user:ops" in closed.message

    _age(alive, 121)
    clean_console_sessions()
    assert not ConsoleSession.objects.exists()
    assert DEVICE_CONSOLE not in (Device.objects.get(name=device).annotations or {})


def test_a_new_session_drops_the_device_s_stale_rows_even_if_they_had_joined(device):
    dead = _open(device)
    sessions.mark_connected(dead)
    _age(dead, 121)
    fresh = _open(device)
    assert _listed(device) == [fresh]
    assert list(ConsoleSession.objects.values_list("id", flat=True)) == [uuid.UUID(fresh)]


def test_the_holder_refreshes_all_its_sessions_together(transactional_db, device, monkeypatch,
                                                        django_assert_num_queries):
    monkeypatch.setattr(settings.FLIGHTCTL, "console_session_timeout", "1s")
    ids = [_open(device) for _ in range(3)]
    for session_id in ids:
        _age(session_id, 3600)
    with django_assert_num_queries(1):
        sessions.touch(ids)
    fresh = timezone.now() - timedelta(seconds=5)
    assert ConsoleSession.objects.filter(seen_at__gt=fresh).count() == 3

    for session_id in ids:
        _age(session_id, 3600)

    original = sessions.touch

    def touch(ids):  # in a pool thread: hand its connection back, or the test database stays
        try:
            original(ids)
        finally:
            connection.close()
    monkeypatch.setattr(sessions, "touch", touch)

    async def hold():
        held = Held()
        for session_id in ids[:2]:
            held.add(session_id)
        await asyncio.sleep(0.5)  # past one interval (a third of the timeout)
        for session_id in ids[:2]:
            held.discard(session_id)
    asyncio.run(hold())
    refreshed = set(ConsoleSession.objects.filter(seen_at__gt=fresh).values_list("id", flat=True))
    assert refreshed == {uuid.UUID(i) for i in ids[:2]}
