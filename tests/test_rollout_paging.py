"""A fleet-wide rollout commits page by page, so the first devices get their spec (and their
notification) while later pages are still being rendered."""

from __future__ import annotations

import psycopg
import pytest

pytestmark = pytest.mark.django_db(transaction=True)

ORG = "00000000-0000-0000-0000-000000000000"


def _fleet(api, image: str) -> None:
    body = {"metadata": {"name": "wide"}, "spec": {
        "selector": {"matchLabels": {"fleet": "wide"}},
        "template": {"spec": {"os": {"image": image}}}}}
    response = api.put("/api/v1/fleets/wide", body, format="json")
    assert response.status_code in (200, 201), response.json()


def _fleet_of(api, count: int) -> None:
    """Fleet ``wide`` (its first template) with ``count`` adopted members."""
    from devices.tasks import match_device

    _fleet(api, "quay.io/x/os:1")
    for i in range(count):
        api.put(f"/api/v1/devices/d{i}", {"metadata": {"name": f"d{i}", "labels": {
            "fleet": "wide"}}}, format="json")
    match_device({"org_id": ORG, "name": "d0"})


def test_each_page_is_committed_before_the_next_is_dispatched(api, monkeypatch):
    from agent_api.listener import _conninfo
    from devices.models import Device
    from fleets import rollout
    from fleets.tasks import validate_fleet

    _fleet_of(api, 10)
    validate_fleet({"org_id": ORG, "name": "wide"})

    monkeypatch.setattr(rollout, "PAGE", 4)
    seen_by_others = []
    dispatch_page = rollout._dispatch_page

    def observed(tv, page):
        # What another connection (an agent's long-poll) can read when each page starts.
        with psycopg.connect(_conninfo(), autocommit=True) as other:
            seen_by_others.append(other.execute(
                "SELECT count(*) FROM devices_device WHERE rendered_spec->'os'->>'image' = %s",
                ["quay.io/x/os:2"]).fetchone()[0])
        return dispatch_page(tv, page)

    monkeypatch.setattr(rollout, "_dispatch_page", observed)
    with psycopg.connect(_conninfo(), autocommit=True) as listener:
        listener.execute("LISTEN flightctl_rendered")
        _fleet(api, "quay.io/x/os:2")
        validate_fleet({"org_id": ORG, "name": "wide"})
        woken = {n.payload.split("/")[1] for n in listener.notifies(timeout=2, stop_after=10)}

    assert seen_by_others == [0, 4, 8]
    assert woken == {f"d{i}" for i in range(10)}
    assert {d.rendered_spec["os"]["image"] for d in Device.objects.all()} == {"quay.io/x/os:2"}


def test_a_pass_stops_when_a_newer_template_version_appears(api, monkeypatch):
    from devices.models import Device
    from fleets import rollout
    from fleets.tasks import validate_fleet

    _fleet_of(api, 6)
    monkeypatch.setattr(rollout, "PAGE", 2)
    dispatch_page = rollout._dispatch_page
    pages = []

    def newer_template_after_first_page(tv, page):
        pages.append(tv.name)
        sent = dispatch_page(tv, page)
        if len(pages) == 1:  # another writer creates TemplateVersion 2 meanwhile
            from fleets.models import Fleet
            from fleets.templates import create_template_version

            fleet = Fleet.objects.get(name="wide")
            fleet.spec["template"]["spec"]["os"]["image"] = "quay.io/x/os:2"
            Fleet.objects.filter(pk=fleet.pk).update(spec=fleet.spec, generation=2)
            fleet.generation = 2
            create_template_version(fleet)
        return sent

    monkeypatch.setattr(rollout, "_dispatch_page", newer_template_after_first_page)
    validate_fleet({"org_id": ORG, "name": "wide"})

    first, *rest = pages
    assert rest and all(name != first for name in rest)  # no page of the stale version after
    assert {d.spec["os"]["image"] for d in Device.objects.all()} == {"quay.io/x/os:2"}


def test_pages_follow_the_dispatch_rate(api, monkeypatch, settings):
    from fleets import rollout
    from fleets.tasks import validate_fleet

    _fleet_of(api, 5)
    monkeypatch.setattr(settings.FLIGHTCTL, "rollout_dispatch_rate", 20)  # 2 devices a page
    sizes = []
    dispatch_page = rollout._dispatch_page
    monkeypatch.setattr(rollout, "_dispatch_page",
                        lambda tv, page: sizes.append(len(page)) or dispatch_page(tv, page))
    validate_fleet({"org_id": ORG, "name": "wide"})
    assert sizes == [2, 2, 1]


def test_a_long_pass_goes_on_in_a_new_task_and_one_pass_runs_at_a_time(api, monkeypatch,
                                                                        settings):
    from agent_api.listener import _conninfo
    from fleets import rollout
    from fleets.models import Fleet
    from fleets.tasks import progress_fleet

    _fleet_of(api, 20)
    monkeypatch.setattr(settings.FLIGHTCTL, "rollout_dispatch_rate", 20)  # 2 every 0.1 s
    queued = []
    monkeypatch.setattr(rollout, "enqueue", lambda name, payload, **kw: queued.append(
        (name, payload["name"], kw)))
    from fleets.tasks import validate_fleet

    # Half of it, 0.5 s: five or six pages of two, then the pass goes on in a new task.
    monkeypatch.setattr(settings.FLIGHTCTL, "task_timeout", "1s")
    validate_fleet({"org_id": ORG, "name": "wide"})
    assert queued == [("fleet-progress", "wide", {"delay": 1})]

    fleet = Fleet.objects.get(name="wide")
    with psycopg.connect(_conninfo(), autocommit=True) as other:  # a pass running elsewhere
        other.execute("SELECT pg_advisory_lock(%s, %s)", [rollout.DISPATCH_LOCK, fleet.pk])
        assert rollout.dispatch_fleet(fleet.pk) == 0
    monkeypatch.setattr(settings.FLIGHTCTL, "task_timeout", "120s")
    progress_fleet({"org_id": ORG, "name": "wide"})  # the queued continuation
    from devices.models import Device

    assert {d.rendered_spec["os"]["image"] for d in Device.objects.all()} == {"quay.io/x/os:1"}
    assert len(queued) == 1


def test_the_dispatch_rate_grows_while_deliveries_keep_up_and_is_cut_when_they_lag(db):
    """fleets.pacing: judged on rendered pages old enough, from the agent API's record of
    each delivery (last_seen written at the moment a woken long-poll answers)."""
    import time
    from datetime import timedelta

    from django.utils import timezone

    from devices.models import Device
    from fleets.pacing import Pace

    rendered_at = timezone.now() - timedelta(seconds=5)

    def devices(prefix: str, seen_after_render: float) -> list[int]:
        return [Device.objects.create(
            org_id=ORG, name=f"{prefix}{i}", rendered_version=1, rendered_at=rendered_at,
            last_seen=rendered_at + timedelta(seconds=seen_after_render)).pk for i in range(10)]

    delivered, lagging = devices("fast", 0.3), devices("slow", -30)
    offline = devices("gone", -3600)  # not heard from for an hour: says nothing
    pace, now = Pace(100), time.monotonic()
    for ids, later in ((delivered, 1), (lagging, 2), (offline, 3), (delivered[:3], 4)):
        pace.rendered(ids, at=now + later - 5)
        pace.adjust(now=now + later)
    assert [rate for _, _, rate in pace.history] == [110.0, 77.0]
    # a page is judged once; three devices are too few to move the rate
    assert pace.rate == 77.0 and pace.page_size(1000) == 7
    assert Pace(100).ceiling == 800 and Pace(100).floor == 25
