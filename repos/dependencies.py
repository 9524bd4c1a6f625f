"""Dependency sync: new git commits and HTTP content reach devices (service.md §3.4).

Each tick probes every dependency in use once (``git ls-remote`` of the revision; a GET of the
HTTP URL) and compares it with what was rendered:

* a fleet's current TemplateVersion froze a commit or body (repos.providers); when the live
  one differs, the fleets app (through the hook it registered with :func:`on_renewal`) gives
  the fleet a new TemplateVersion ``v<generation>-<hash>`` (the hash of the previous
  TemplateVersion and the new fingerprints, so a delivery twice makes it once and a branch
  moving back and forth still makes a new one) and starts its rollout;
* a standalone device recorded what its last render used; when that differs it is re-rendered.

Both record ``DependencyChangeDetected`` (``resourceKey`` such as ``git:my-repo/main`` and the
new ``fingerprint``); a probe that fails records ``DependencySyncProbeFailed`` on the
Repository and changes nothing.
"""

from __future__ import annotations

import logging
from collections import defaultdict
from collections.abc import Callable

from django.db import transaction

from devices.hooks import request_render
from flightctl.api.annotations import TEMPLATE_VERSION
from flightctl.api.events import WORKER_ACTOR, WORKER_COMPONENT, record_event
from repos import access, git
from repos.choices import Reason, RepoType
from repos.crypto import SecretError
from repos.models import ConfigSnapshot
from repos.providers import ProviderError, body_fingerprint, fetch_http, repository_spec

log = logging.getLogger(__name__)

#: ``renew(tv, changes) -> bool``: a new TemplateVersion for the fleet of ``tv``, whose
#: dependencies changed (``changes``: ``(key, new fingerprint)``); True if one was made
_RENEWALS: list[Callable] = []


def on_renewal(renew: Callable) -> Callable:
    """Register ``renew(tv, changes)`` (fleets.hooks)."""
    if renew not in _RENEWALS:
        _RENEWALS.append(renew)
    return renew


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
                         f"Probing {key} failed: {exc}", actor=WORKER_ACTOR,
                         component=WORKER_COMPONENT, type="Warning",
                         details={"detailType": "DependencySyncProbeFailed",
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
        if (tv.fleet.annotations or {}).get(TEMPLATE_VERSION) == tv.name:  # the current one
            frozen[tv.pk].append(snapshot)
    renewed = []
    for snapshots in frozen.values():
        tv = snapshots[0].template_version
        changes = []
        for snapshot in snapshots:
            live = probe(snapshot.org_id, snapshot.repository, snapshot.key)
            if live is not None and live != snapshot.fingerprint:
                changes.append((snapshot.key, live))
        if changes and any([renew(tv, changes) for renew in _RENEWALS]):
            renewed.append(tv.fleet.name)
    return renewed


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
                             f"Dependency {key} changed to {value}.", actor=WORKER_ACTOR,
                             component=WORKER_COMPONENT,
                             details={"detailType": "DependencyChangeDetected",
                                      "resourceKey": key, "fingerprint": value})
            request_render(device)
    return sorted(device.name for device, _ in changed.values())
