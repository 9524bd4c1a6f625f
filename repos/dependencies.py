"""Dependency sync: new git commits and HTTP content reach devices (service.md §3.4).

Each tick probes every dependency in use once (``git ls-remote`` of the revision; a GET of the
HTTP URL) and compares it with what was rendered:

* a fleet's current TemplateVersion froze a commit or body (repos.providers); when the live
  one differs, the fleet gets a new TemplateVersion ``v<generation>-<hash>`` (the hash of the
  previous TemplateVersion and the new fingerprints, so a delivery twice makes it once and a
  branch moving back and forth still makes a new one) and its rollout starts;
* a standalone device recorded what its last render used; when that differs it is re-rendered.

Both record ``DependencyChangeDetected`` (``resourceKey`` such as ``git:my-repo/main`` and the
new ``fingerprint``); a probe that fails records ``DependencySyncProbeFailed`` on the
Repository and changes nothing.
"""

from __future__ import annotations

import logging
from collections import defaultdict

from django.db import transaction

from flightctl.api.events import record_event
from flightctl.tasks import enqueue
from repos import access, git
from repos.choices import ACTOR, COMPONENT, Reason, RepoType
from repos.crypto import SecretError
from repos.models import ConfigSnapshot
from repos.providers import ProviderError, body_fingerprint, fetch_http, repository_spec

log = logging.getLogger(__name__)
FLEET_TV = "fleet-controller/templateVersion"


class _Prober:
    """Live fingerprints, each dependency probed at most once per tick."""

    def __init__(self):
        self.results: dict[tuple, str | None] = {}

    def __call__(self, org_id, repository: str, key: str) -> str | None:
        cache_key = (str(org_id), key)
        if cache_key not in self.results:
            self.results[cache_key] = self._probe(org_id, repository, key)
        return self.results[cache_key]

    def _probe(self, org_id, repository: str, key: str) -> str | None:
        kind, _, rest = key.partition(":")
        reference = rest[len(repository) + 1:]
        try:
            if kind == "git":
                spec = repository_spec(org_id, repository, RepoType.GIT)
                sha = git.remote_revision(spec, reference)
                if sha is None:
                    raise git.GitError(f'revision "{reference}" not found')
                return sha
            spec = repository_spec(org_id, repository, RepoType.HTTP)
            return body_fingerprint(fetch_http(spec, reference))
        except (git.GitError, access.AccessError, ProviderError, SecretError) as exc:
            record_event(org_id, "Repository", repository, Reason.DEPENDENCY_PROBE_FAILED,
                         f"Probing {key} failed: {exc}", actor=ACTOR, component=COMPONENT,
                         type="Warning", details={"detailType": "DependencySyncProbeFailed",
                                                  "resourceKey": key, "error": str(exc)})
            return None


def sync_all() -> dict:
    """One tick over every organization; returns what changed (for logs and tests)."""
    probe = _Prober()
    return {"fleets": _sync_fleets(probe), "devices": _sync_devices(probe)}


def _sync_fleets(probe: _Prober) -> list[str]:
    frozen = defaultdict(list)
    for snapshot in ConfigSnapshot.objects.filter(template_version__isnull=False).select_related(
            "template_version__fleet").order_by("pk"):
        tv = snapshot.template_version
        if (tv.fleet.annotations or {}).get(FLEET_TV) == tv.name:  # only the current one
            frozen[tv.pk].append(snapshot)
    renewed = []
    for snapshots in frozen.values():
        tv = snapshots[0].template_version
        changes = []
        for snapshot in snapshots:
            live = probe(snapshot.org_id, snapshot.repository, snapshot.key)
            if live is not None and live != snapshot.fingerprint:
                changes.append((snapshot.key, live))
        if changes and _renew(tv, changes):
            renewed.append(tv.fleet.name)
    return renewed


def _renew(tv, changes: list[tuple[str, str]]) -> bool:
    from fleets import rollout
    from fleets.models import Fleet
    from fleets.templates import create_template_version

    with transaction.atomic():
        fleet = Fleet.objects.select_for_update().filter(pk=tv.fleet_id).first()
        if fleet is None or (fleet.annotations or {}).get(FLEET_TV) != tv.name:
            return False  # the template changed meanwhile: its new version fetches afresh
        fingerprint = tv.name + "|" + ";".join(f"{key}={value}" for key, value in changes)
        new = create_template_version(fleet, fingerprint=fingerprint)
        if new is None:
            return False
        for key, value in changes:
            record_event(fleet.org_id, "Fleet", fleet.name, Reason.DEPENDENCY_CHANGE,
                         f"Dependency {key} changed to {value}: new template version "
                         f"{new.name}.", actor=ACTOR, component=COMPONENT,
                         details={"detailType": "DependencyChangeDetected",
                                  "resourceKey": key, "fingerprint": value})
        rollout.progress(fleet)
    rollout.dispatch_fleet(fleet.pk)
    return True


def _sync_devices(probe: _Prober) -> list[str]:
    changed: dict[int, tuple] = {}
    for snapshot in ConfigSnapshot.objects.filter(device__isnull=False).select_related(
            "device").order_by("pk"):
        device = snapshot.device
        if (device.owner or "").startswith("Fleet/"):
            continue  # fleet members follow their TemplateVersion
        live = probe(snapshot.org_id, snapshot.repository, snapshot.key)
        if live is not None and live != snapshot.fingerprint:
            changed.setdefault(device.pk, (device, []))[1].append((snapshot.key, live))
    for device, changes in changed.values():
        with transaction.atomic():
            for key, value in changes:
                record_event(device.org_id, "Device", device.name, Reason.DEPENDENCY_CHANGE,
                             f"Dependency {key} changed to {value}.", actor=ACTOR,
                             component=COMPONENT,
                             details={"detailType": "DependencyChangeDetected",
                                      "resourceKey": key, "fingerprint": value})
            enqueue("device-render", {"org_id": str(device.org_id), "name": device.name,
                                      "kind": "Device"})
    return sorted(device.name for device, _ in changed.values())
