"""Resolving ``gitRef`` and ``httpRef`` config providers into device files at render time.

A git provider maps ``path`` at ``targetRevision`` onto the device: a directory onto ``/``
(recursively), a single file onto ``/<basename>``. An HTTP provider writes the body of
``<repository url><suffix>`` to ``filePath``. Placeholders in those fields were already
resolved for the device when its spec was written (fleets.templates.device_spec).

**Freezing.** Devices of one TemplateVersion must get the same content, even when the branch
moves or the HTTP server changes while the rollout is under way. The first member to render
records the commit SHA (or the HTTP body) as a :class:`~repos.models.ConfigSnapshot` of the
TemplateVersion; the others reuse it. New content reaches a fleet as a new TemplateVersion made
by the dependency sync (``repos.dependencies``). Standalone devices fetch fresh on every render.
Which TemplateVersion a device renders is for the fleets app to say: it registers the lookup
with :func:`register_freeze_scope`.

The providers are registered with the renderer (devices.rendering) when the app is ready.
"""

from __future__ import annotations

import base64
import hashlib
from collections.abc import Callable

from django.db import IntegrityError, transaction

from devices import bulk
from devices.models import Device
from devices.rendering import RenderError
from devices.validation.common import check_device_path
from flightctl.api.serializers import now_timestamp
from flightctl.api.validation import Errors
from repos import access, git
from repos.choices import RepoType
from repos.crypto import SecretError, unseal
from repos.models import ConfigSnapshot, Repository

MAX_HTTP_BODY = 1024 * 1024


class ProviderError(RenderError):
    """The provider cannot be resolved; the message is for SpecValid=False."""


#: ``scope(device)``: the TemplateVersion whose members share frozen content, or None
_freeze_scope: Callable | None = None


def register_freeze_scope(scope: Callable) -> None:
    """Let ``scope(device)`` name the TemplateVersion a fleet member renders (fleets.hooks)."""
    global _freeze_scope
    _freeze_scope = scope


def git_key(repository: str, revision: str) -> str:
    return f"git:{repository}/{revision}"


def http_key(repository: str, suffix: str) -> str:
    return f"http:{repository}/{suffix}"


def body_fingerprint(body: bytes) -> str:
    return "sha256:" + hashlib.sha256(body).hexdigest()


def resolve(provider: dict, device) -> list[dict]:
    """The inline file entries ``provider`` stands for, for ``device``."""
    try:
        if "gitRef" in provider:
            return _git(provider["name"], provider["gitRef"], device)
        if "httpRef" in provider:
            return [_http(provider["name"], provider["httpRef"], device)]
    except (git.GitError, access.AccessError, SecretError) as exc:
        raise ProviderError(str(exc))
    raise ProviderError("not a gitRef or httpRef provider")


def repository_spec(org_id, name: str, kind: str) -> dict:
    repo = Repository.objects.restrict(org_id).filter(name=name).first()
    if repo is None:
        raise ProviderError(f'Repository "{name}" not found')
    spec = unseal(repo.spec)
    if spec.get("type") != kind:
        raise ProviderError(f'Repository "{name}" is of type {spec.get("type")}, not {kind}')
    return spec


def template_version_of(device):
    """The TemplateVersion a fleet member renders (the freeze scope); None if standalone."""
    return _freeze_scope(device) if _freeze_scope is not None else None


def _frozen(tv, key: str) -> ConfigSnapshot | None:
    if tv is None:
        return None
    return ConfigSnapshot.objects.filter(template_version=tv, key=key).first()


def _record(device, tv, repository: str, key: str, fingerprint: str,
            content: str = "") -> ConfigSnapshot:
    """Freeze for the TemplateVersion (the first writer wins) or record for the device."""
    if tv is None:
        snapshot, _ = ConfigSnapshot.objects.update_or_create(
            device=device, key=key,
            defaults={"org_id": device.org_id, "repository": repository,
                      "fingerprint": fingerprint})
        return snapshot
    try:
        with transaction.atomic():
            return ConfigSnapshot.objects.create(
                org_id=device.org_id, template_version=tv, repository=repository, key=key,
                fingerprint=fingerprint, content=content)
    except IntegrityError:
        # Another worker froze it first (its transaction committed while we waited on the
        # unique index): everybody uses that one.
        return ConfigSnapshot.objects.get(template_version=tv, key=key)


def _git(name: str, ref: dict, device) -> list[dict]:
    spec = repository_spec(device.org_id, ref["repository"], RepoType.GIT)
    revision = ref["targetRevision"]
    key = git_key(ref["repository"], revision)
    tv = template_version_of(device)
    frozen = _frozen(tv, key)
    mirror, sha = git.fetch(spec, revision, want=frozen.fingerprint if frozen else None)
    if frozen is None:
        snapshot = _record(device, tv, ref["repository"], key, sha)
        if snapshot.fingerprint != sha:
            mirror, sha = git.fetch(spec, revision, want=snapshot.fingerprint)
    files = git.read_path(mirror, sha, ref["path"])
    if not files:
        raise ProviderError(f'path "{ref["path"]}" at {revision} ({sha[:12]}) holds no files')
    record_config_ref(device, name, sha)
    return [_entry(f.path, f.content, 0o755 if f.executable else None) for f in files]


def _http(name: str, ref: dict, device) -> dict:
    spec = repository_spec(device.org_id, ref["repository"], RepoType.HTTP)
    suffix = ref.get("suffix") or ""
    key = http_key(ref["repository"], suffix)
    tv = template_version_of(device)
    frozen = _frozen(tv, key)
    if frozen is not None:
        body = base64.b64decode(frozen.content)
    else:
        body = fetch_http(spec, suffix)
        fingerprint = body_fingerprint(body)
        snapshot = _record(device, tv, ref["repository"], key, fingerprint,
                           base64.b64encode(body).decode() if tv is not None else "")
        if snapshot.fingerprint != fingerprint:
            body = base64.b64decode(snapshot.content)
    record_config_ref(device, name, body_fingerprint(body))
    return _entry(ref["filePath"], body, None)


def fetch_http(spec: dict, suffix: str) -> bytes:
    response = access.http_get(spec.get("httpConfig") or {}, spec["url"] + suffix)
    if len(response.content) > MAX_HTTP_BODY:
        raise ProviderError(f"the HTTP body is larger than {MAX_HTTP_BODY} bytes")
    return response.content


def _entry(path: str, content: bytes, mode: int | None) -> dict:
    errors = Errors()
    if not check_device_path(errors, "path", path):
        raise ProviderError("; ".join(errors))
    try:
        entry = {"path": path, "content": content.decode("utf-8"), "contentEncoding": "plain"}
    except UnicodeDecodeError:
        entry = {"path": path, "content": base64.b64encode(content).decode(),
                 "contentEncoding": "base64"}
    if mode is not None:
        entry["mode"] = mode
    return entry


def record_config_ref(device, provider_name: str, fingerprint: str) -> None:
    """``status.dependencySync.configRefs``: what each provider rendered, and since when."""
    status = dict(device.status or {})
    refs = list(((status.get("dependencySync") or {}).get("configRefs")) or [])
    current = next((r for r in refs if r.get("configProviderName") == provider_name), None)
    if current is not None and current.get("fingerprint") == fingerprint:
        return
    entry = {"configProviderName": provider_name, "fingerprint": fingerprint,
             "lastUpdatedAt": now_timestamp()}
    refs = [r for r in refs if r.get("configProviderName") != provider_name] + [entry]
    status["dependencySync"] = {"configRefs": refs}
    device.status = status
    if device.pk is None:
        return
    # Only this member of the status: agents' status writes keep it (it is service-owned),
    # and the render that follows writes the other columns of the row.
    bulk.set_status_member(Device.objects.filter(pk=device.pk), "dependencySync",
                           {"configRefs": refs})
