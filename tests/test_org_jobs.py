"""Periodic work per organization: two organizations with a device, a fleet, a repository and
a ResourceSync of the same names, and every periodic job and task handler keeps them apart
(names are unique per organization only): fleet matching, validation and rollout
progression; the inventory gauges; the connectivity check and the alert exporter (a real
Alertmanager); repository checks and ResourceSync runs against a real git server; dependency
sync; console session cleanup. Events carry the organization of the object they are about.

The queued follow-up tasks run in this process through the worker's own entry point
(:func:`flightctl.tasks.execute`), one after another, as a django-q worker would."""

from __future__ import annotations

import datetime
import uuid

import pytest
from django.utils import timezone

from tests.test_alerts import alertmanager  # noqa: F401 - a fixture
from tests.test_device_api import device
from tests.test_device_health import reported
from tests.test_organizations import organization
from tests.test_resourcesync import fleet_yaml

pytest_plugins = ["tests.gitservers"]
pytestmark = pytest.mark.django_db

DEV, FLEET, REPO, RS = ("/api/v1/devices", "/api/v1/fleets", "/api/v1/repositories",
                        "/api/v1/resourcesyncs")


def drain(limit: int = 500) -> int:
    """Run the queued tasks (not the periodic ticks) until none is left; how many ran."""
    from django_q.models import OrmQ

    from flightctl.tasks import execute

    ran = 0
    for _ in range(limit):
        queued = OrmQ.objects.order_by("id").first()
        if queued is None:
            return ran
        task = queued.task
        queued.delete()
        if task["func"] == "flightctl.tasks.execute":
            execute(*task["args"])
            ran += 1
    raise AssertionError("the queue does not run dry")


def events(org, name: str, kind: str = "Device") -> list[str]:
    from flightctl.models import Event

    return list(Event.objects.filter(org_id=org.id, involved_kind=kind, involved_name=name)
                .order_by("id").values_list("reason", flat=True))


def fleet_body(site: str, image: str = "os:1", config=None) -> dict:
    spec = {"os": {"image": f"quay.io/{site}/{image}"}}
    if config:
        spec["config"] = config
    return {"apiVersion": "flightctl.io/v1beta1", "kind": "Fleet", "metadata": {"name": "f1"},
            "spec": {"selector": {"matchLabels": {"site": site}}, "template": {"spec": spec}}}


@pytest.fixture
def orgs(api):
    """Organizations A and B, each with device ``dev1`` (label site=a / site=b)."""
    a, b = organization("org-a"), organization("org-b")
    for org, site in ((a, "a"), (b, "b")):
        body = device("dev1")
        body["metadata"]["labels"] = {"site": site}
        assert api.post(f"{DEV}?org_id={org.id}", body, format="json").status_code == 201
    return a, b


def row(org, model=None, name: str = "dev1"):
    from devices.models import Device

    return (model or Device).objects.get(org_id=org.id, name=name)


def image_of(org) -> str:
    return (row(org).rendered_spec or {}).get("os", {}).get("image")


def test_fleet_tasks_and_rollout_progress_keep_organizations_apart(api, orgs):
    from devices.hooks import request_fleet_render, request_renders
    from devices.metrics import device_families
    from devices.models import Device
    from fleets.metrics import fleet_families
    from fleets.models import Fleet
    from fleets.tasks import progress_all

    a, b = orgs
    for org, site in ((a, "a"), (b, "b")):
        assert api.post(f"{FLEET}?org_id={org.id}", fleet_body(site),
                        format="json").status_code == 201
    drain()  # fleet-selector, fleet-validate, device-owner, renders
    for org, site in ((a, "a"), (b, "b")):
        assert row(org).owner == "Fleet/f1"
        assert image_of(org) == f"quay.io/{site}/os:1"
    # A's template changes; B's fleet of the same name and its device stay as they were.
    b_before = (row(b, Fleet, "f1").annotations, row(b).rendered_version)
    assert api.put(f"{FLEET}/f1?org_id={a.id}", fleet_body("a", "os:2"),
                   format="json").status_code == 200
    drain()
    progress_all()
    drain()
    assert image_of(a) == "quay.io/a/os:2"
    assert image_of(b) == "quay.io/b/os:1"
    assert (row(b, Fleet, "f1").annotations, row(b).rendered_version) == b_before
    # B's fleet and device have no event of A's rollout.
    assert "FleetRolloutStarted" in events(a, "f1", "Fleet")
    assert events(b, "f1", "Fleet").count("FleetRolloutStarted") == 1  # its own first one
    # Re-renders asked for in one organization render its devices only (fleet-render,
    # device-render-batch; an id of the other organization in a batch is ignored).
    Device.objects.filter(name="dev1").update(rendered_hash="", rendered_spec={})
    request_fleet_render(row(a, Fleet, "f1"))
    drain()
    assert (image_of(a), image_of(b)) == ("quay.io/a/os:2", None)
    Device.objects.filter(org_id=a.id).update(rendered_hash="", rendered_spec={})
    request_renders(b.id, [row(b).pk, row(a).pk])
    drain()
    assert (image_of(a), image_of(b)) == (None, "quay.io/b/os:1")

    # The inventory gauges count each organization's f1 and dev1 apart.
    summary = next(f for f in device_families() if f.name == "flightctl_devices_summary")
    counted = {(s.labels["organization_id"], s.labels["fleet"]): s.value
               for s in summary.samples}
    assert counted == {(str(a.id), "f1"): 1, (str(b.id), "f1"): 1}
    fleets = {s.labels["organization_id"]: s.value for s in fleet_families()[0].samples}
    assert fleets == {str(a.id): 1, str(b.id): 1}

    # A's dev1 relabelled (device-owner task): it leaves A's f1, B's dev1 stays in B's f1.
    body = device("dev1")
    body["metadata"]["labels"] = {"site": "x"}
    assert api.put(f"{DEV}/dev1?org_id={a.id}", body, format="json").status_code == 200
    drain()
    assert row(a).owner is None and row(b).owner == "Fleet/f1"


def test_connectivity_check_and_alerts_per_organization(api, orgs, settings, monkeypatch,
                                                        alertmanager):  # noqa: F811
    import requests

    from devices.health import check_connectivity
    from devices.models import Device
    from devices.services import record_agent_status
    from flightctl.alerts import export_alerts

    a, b = orgs
    for org in (a, b):
        record_agent_status(row(org), reported(config={"renderedVersion": ""}))
    # A's dev1 falls silent; B's dev1 of the same name keeps reporting.
    Device.objects.filter(org_id=a.id, name="dev1").update(
        last_seen=timezone.now() - datetime.timedelta(seconds=600))
    assert check_connectivity() == 1
    assert (row(a).summary_status, row(b).summary_status) == ("Unknown", "Online")
    assert "DeviceDisconnected" in events(a, "dev1")
    assert "DeviceDisconnected" not in events(b, "dev1")

    monkeypatch.setattr(settings.FLIGHTCTL, "alertmanager_url", alertmanager)

    def active() -> set:
        alerts = requests.get(f"{alertmanager}/api/v2/alerts", params={"active": "true"},
                              timeout=5).json()
        return {(x["labels"]["alertname"], x["labels"]["resource"], x["labels"]["org_id"])
                for x in alerts if x["status"]["state"] == "active"}

    export_alerts()
    assert active() == {("DeviceDisconnected", "dev1", str(a.id))}
    # Now B's dev1 is silent too, and A's comes back: two alerts of one name, kept apart.
    Device.objects.filter(org_id=b.id, name="dev1").update(
        last_seen=timezone.now() - datetime.timedelta(seconds=600))
    check_connectivity()
    export_alerts()
    assert active() == {("DeviceDisconnected", "dev1", str(a.id)),
                        ("DeviceDisconnected", "dev1", str(b.id))}
    record_agent_status(row(a), reported(config={"renderedVersion": ""}))
    export_alerts()
    assert active() == {("DeviceDisconnected", "dev1", str(b.id))}


def put_repo(api, org, url: str, name: str = "r1") -> None:
    body = {"apiVersion": "flightctl.io/v1beta1", "kind": "Repository",
            "metadata": {"name": name}, "spec": {"type": "git", "url": url}}
    assert api.put(f"{REPO}/{name}?org_id={org.id}", body, format="json").status_code in (
        200, 201)


def accessible(org, name: str = "r1") -> str:
    from repos.models import Repository

    found = [c for c in row(org, Repository, name).status.get("conditions", [])
             if c["type"] == "Accessible"]
    return found[0]["status"] if found else "Unknown"


def test_repository_checks_and_resource_syncs_per_organization(api, orgs, make_repo,
                                                               git_daemon):
    from django_q.models import OrmQ

    from fleets.models import Fleet
    from repos.models import Repository
    from repos.tasks import check_all_repositories, sync_all_resource_syncs

    a, b = orgs
    for org, fleet in ((a, "fleet-of-a"), (b, "fleet-of-b")):
        repo = make_repo()
        repo.commit({"fleets/f.yaml": fleet_yaml(fleet)})
        put_repo(api, org, git_daemon + repo.name)
        body = {"apiVersion": "flightctl.io/v1beta1", "kind": "ResourceSync",
                "metadata": {"name": "rs1"},
                "spec": {"repository": "r1", "targetRevision": "main", "path": "/fleets"}}
        assert api.post(f"{RS}?org_id={org.id}", body, format="json").status_code == 201
    OrmQ.objects.all().delete()  # the periodic jobs do it below
    sync_all_resource_syncs()
    drain()
    # Each organization's ResourceSync read its own r1.
    assert set(Fleet.objects.filter(org_id=a.id).values_list("name", flat=True)) == {
        "fleet-of-a"}
    assert set(Fleet.objects.filter(org_id=b.id).values_list("name", flat=True)) == {
        "fleet-of-b"}
    assert Fleet.objects.get(org_id=b.id, name="fleet-of-b").owner == "ResourceSync/rs1"

    # B's r1 now points at nothing (written behind the API's back, so only the periodic
    # check can notice); A's r1 of the same name stays accessible.
    spec = dict(row(b, Repository, "r1").spec)
    spec["url"] = git_daemon + "gone-" + uuid.uuid4().hex
    Repository.objects.filter(org_id=b.id, name="r1").update(spec=spec)
    check_all_repositories()
    drain()
    assert (accessible(a), accessible(b)) == ("True", "False")
    assert "RepositoryInaccessible" in events(b, "r1", "Repository")
    assert "RepositoryInaccessible" not in events(a, "r1", "Repository")
    # The next sync of B fails on its own repository; A's keeps its fleet.
    sync_all_resource_syncs()
    drain()
    assert Fleet.objects.filter(org_id=a.id, name="fleet-of-a").exists()
    assert set(Fleet.objects.filter(org_id=b.id).values_list("name", flat=True)) == {
        "fleet-of-b"}


def test_dependency_sync_renews_only_the_organization_whose_repository_moved(
        api, orgs, make_repo, git_daemon):
    from fleets.models import Fleet
    from repos.tasks import sync_dependencies

    a, b = orgs
    served = {}
    for org, site in ((a, "a"), (b, "b")):
        repo = make_repo()
        repo.commit({"etc/motd": f"hello from {site}\n"})
        served[org.id] = repo
        put_repo(api, org, git_daemon + repo.name)
        config = [{"name": "motd", "gitRef": {"repository": "r1", "targetRevision": "main",
                                              "path": "/etc/motd"}}]
        assert api.post(f"{FLEET}?org_id={org.id}", fleet_body(site, config=config),
                        format="json").status_code == 201
    drain()

    def motd(org) -> str:
        inline = row(org).rendered_spec["config"][0]["inline"]
        return inline[0]["content"]

    assert "hello from a" in motd(a) and "hello from b" in motd(b)
    tv_of = {org.id: row(org, Fleet, "f1").annotations["fleet-controller/templateVersion"]
             for org in (a, b)}
    served[a.id].commit({"etc/motd": "hello again from a\n"})
    sync_dependencies()
    drain()
    assert row(a, Fleet, "f1").annotations["fleet-controller/templateVersion"] != tv_of[a.id]
    assert row(b, Fleet, "f1").annotations["fleet-controller/templateVersion"] == tv_of[b.id]
    assert "hello again from a" in motd(a) and "hello from b" in motd(b)
    assert "DependencyChangeDetected" in events(a, "f1", "Fleet")
    assert "DependencyChangeDetected" not in events(b, "f1", "Fleet")


def test_console_cleanup_closes_the_stale_session_of_its_own_organization(api, orgs):
    from devices.console import sessions
    from devices.models import ConsoleSession

    a, b = orgs
    opened = {}
    for org in (a, b):
        opened[org.id] = sessions.open_session(
            org.id, "dev1", '{"tty":true}', actor="user:ops", bridge="test",
            session_id=uuid.uuid4(), stale_after=60).id
    ConsoleSession.objects.filter(id=opened[a.id]).update(
        seen_at=timezone.now() - datetime.timedelta(hours=1))
    assert sessions.expire_stale(600) == 1
    assert list(ConsoleSession.objects.values_list("id", flat=True)) == [opened[b.id]]
    assert [s["sessionID"] for s in sessions.listed_sessions(row(b).annotations)] == [
        str(opened[b.id])]
    assert sessions.listed_sessions(row(a).annotations) == []
    assert "ConsoleSessionClosed" in events(a, "dev1")
    assert "ConsoleSessionClosed" not in events(b, "dev1")
