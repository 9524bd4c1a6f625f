"""ResourceSync: make the fleets described in git match git (service.md §4.3).

One run, under the ResourceSync's row lock:

1. **Accessible** — the Repository exists and the revision can be fetched (its commit SHA).
2. Nothing more to do when the commit and the generation were already synced.
3. **ResourceParsed** — every ``*.yaml``/``*.yml``/``*.json`` file under ``spec.path`` (or
   the one file it names) is read as multi-document YAML or JSON; ``Fleet`` documents are
   checked with the API's own validation, other kinds are skipped. Any error stops the run
   before anything is changed.
4. **Synced** — fleets are created or updated with ``owner: ResourceSync/<name>`` (a fleet owned
   by another ResourceSync is refused), owned fleets that left git are deleted. Each write
   goes through the same events and follow-up hooks as an API write, in this transaction.

How a kind is checked, applied and let go of is its app's business: the fleets app registers
Fleet with :func:`register_synced_kind` (fleets.resourcesync).

Conditions that change are reported as events (``ResourceSyncAccessible``, ...). Fields listed
in the ``resource_sync_ignore`` setting (JSON pointers) are taken from the server's copy of a
fleet rather than from git, for fields something else manages.
"""

from __future__ import annotations

import copy
import json
from collections.abc import Callable
from dataclasses import dataclass

import jsonpatch
import jsonpointer
import yaml
from django.conf import settings
from django.db import transaction
from django.db.models import F

from flightctl.api.conditions import get_condition, set_condition
from flightctl.api.errors import ApiError
from flightctl.api.events import WORKER_ACTOR, WORKER_COMPONENT, record_event
from repos import git
from repos.choices import RESOURCE_SYNC_OWNER, Condition, Reason, RepoType
from repos.crypto import SecretError, unseal
from repos.models import Repository, ResourceSync

MANIFEST_SUFFIXES = (".yaml", ".yml", ".json")
SUPPORTED_KINDS = {"fleet": ("Fleet",), "catalog": ("Catalog", "CatalogItem")}
_CONDITION_EVENTS = {
    Condition.ACCESSIBLE: (Reason.RS_ACCESSIBLE, Reason.RS_INACCESSIBLE),
    Condition.RESOURCE_PARSED: (Reason.RS_PARSED, Reason.RS_PARSING_FAILED),
    Condition.SYNCED: (Reason.RS_SYNCED, Reason.RS_SYNC_FAILED),
}


class SyncError(RuntimeError):
    """A step of the run failed; the message goes into a condition."""


@dataclass(frozen=True)
class SyncedKind:
    """How a ResourceSync takes the documents of one kind from git.

    ``parse(document)`` checks one document as the API would and returns its input (with a
    ``name``), raising :class:`flightctl.api.errors.ApiError`; ``apply(rs, resources)``
    creates, updates and prunes the resources ``rs`` owns to match ``{name: (file, input)}``
    in the caller's transaction and returns how many changed, raising :class:`SyncError`;
    ``release(rs, actor)`` leaves the resources of a deleted ResourceSync in place, owned by
    nobody.
    """

    parse: Callable
    apply: Callable[..., int]
    release: Callable[..., int]


#: kind -> how it is synced; registered by the app that owns the kind
SYNCED_KINDS: dict[str, SyncedKind] = {}


def register_synced_kind(kind: str, synced: SyncedKind) -> None:
    SYNCED_KINDS[kind] = synced


def release(rs: ResourceSync, actor: str) -> int:
    """A deleted ResourceSync leaves what it synced in place, owned by nobody; how many."""
    return sum(synced.release(rs, actor) for synced in SYNCED_KINDS.values())


def owner_of(rs_name: str) -> str:
    return f"{RESOURCE_SYNC_OWNER}{rs_name}"


def run(org_id, name: str) -> None:
    """One ResourceSync run (idempotent: a synced commit and generation are skipped)."""
    with transaction.atomic():
        rs = ResourceSync.objects.restrict(org_id).select_for_update().filter(name=name).first()
        if rs is None:
            return
        before = copy.deepcopy(rs.status or {})
        status = copy.deepcopy(before)
        status.setdefault("conditions", [])
        details: dict = {}
        _run(rs, status, details)
        if status != before:
            ResourceSync.objects.filter(pk=rs.pk).update(
                status=status, resource_version=F("resource_version") + 1)
            _condition_events(rs, before, status, details)


def _run(rs: ResourceSync, status: dict, details: dict) -> None:
    spec = rs.spec or {}
    repo = Repository.objects.restrict(rs.org_id).filter(name=spec.get("repository")).first()
    if repo is None:
        set_condition(status, Condition.ACCESSIBLE, False, "Inaccessible",
                      f'repository resource "{spec.get("repository")}" not found')
        return
    try:
        repo_spec = unseal(repo.spec)
        if repo_spec.get("type") != RepoType.GIT:
            raise git.GitError(f'Repository "{repo.name}" is not a git repository')
        mirror, sha = git.fetch(repo_spec, spec["targetRevision"])
    except (git.GitError, SecretError) as exc:
        set_condition(status, Condition.ACCESSIBLE, False, "Inaccessible",
                      f"failed to clone repository: {exc}")
        return
    set_condition(status, Condition.ACCESSIBLE, True, "Accessible",
                  "Repository is accessible")
    synced = get_condition(status, Condition.SYNCED)
    if (synced and synced.get("status") == "True" and status.get("observedCommit") == sha
            and status.get("observedGeneration") == rs.generation):
        return
    if status.get("observedCommit") != sha:
        record_event(rs.org_id, "ResourceSync", rs.name, Reason.RS_COMMIT_DETECTED,
                     f"New commit {sha} detected.", actor=WORKER_ACTOR, component=WORKER_COMPONENT)
    status["observedCommit"] = sha
    try:
        fleets = parse(mirror, sha, spec.get("path") or "/", spec.get("type") or "fleet")
    except SyncError as exc:
        set_condition(status, Condition.RESOURCE_PARSED, False, "Fail", str(exc))
        set_condition(status, Condition.SYNCED, False, "Fail",
                      "resources could not be parsed; nothing was changed")
        return
    set_condition(status, Condition.RESOURCE_PARSED, True, "Success",
                  f"{len(fleets)} resource(s) parsed")
    try:
        with transaction.atomic():
            changes = _kind("Fleet").apply(rs, fleets)
    except SyncError as exc:
        set_condition(status, Condition.SYNCED, False, "Fail", str(exc))
        details.update(commitHash=sha, changeCount=0, errorCount=1)
        return
    set_condition(status, Condition.SYNCED, True, "Success", "Repository synced successfully")
    status["observedGeneration"] = rs.generation
    details.update(commitHash=sha, changeCount=changes, errorCount=0)


def _condition_events(rs: ResourceSync, before: dict, after: dict, details: dict) -> None:
    for condition, (ok_reason, fail_reason) in _CONDITION_EVENTS.items():
        old, new = get_condition(before, condition), get_condition(after, condition)
        if new is None or (old and (old.get("status"), old.get("message")) == (
                new.get("status"), new.get("message"))):
            continue
        ok = new.get("status") == "True"
        extra = {}
        if condition == Condition.SYNCED and details:
            extra["details"] = {"detailType": "ResourceSyncCompleted", **details}
        record_event(rs.org_id, "ResourceSync", rs.name, ok_reason if ok else fail_reason,
                     new.get("message") or "", actor=WORKER_ACTOR, component=WORKER_COMPONENT,
                     type="Normal" if ok else "Warning", **extra)


# -- parsing ----------------------------------------------------------------------------------


def _kind(kind: str) -> SyncedKind:
    if kind not in SYNCED_KINDS:
        raise SyncError(f"{kind} resources cannot be synced by this server")
    return SYNCED_KINDS[kind]


def _documents(name: str, content: bytes) -> list:
    text = content.decode("utf-8")
    if name.endswith(".json"):
        # Several JSON documents may follow each other in one file.
        decoder, docs, index = json.JSONDecoder(), [], 0
        while True:
            while index < len(text) and text[index].isspace():
                index += 1
            if index >= len(text):
                return docs
            doc, index = decoder.raw_decode(text, index)
            docs.append(doc)
    return [doc for doc in yaml.safe_load_all(text) if doc is not None]


def _strip_ignored(doc: dict) -> dict:
    for pointer in settings.FLIGHTCTL.resource_sync_ignore:
        if jsonpointer.resolve_pointer(doc, pointer, _MISSING) is not _MISSING:
            doc = jsonpatch.apply_patch(doc, [{"op": "remove", "path": pointer}])
    return doc


_MISSING = object()



def parse(mirror, sha: str, path: str, sync_type: str) -> dict[str, tuple[str, object]]:
    """``{fleet name: (file, Incoming)}`` from the manifests at ``path``; SyncError if any
    file or document is not valid."""
    try:
        files = git.read_path(mirror, sha, path)
    except git.GitError as exc:
        raise SyncError(str(exc))
    single_file = len(files) == 1 and path.rstrip("/").endswith(files[0].path)
    fleets: dict = {}
    problems: list[str] = []
    for file in sorted(files, key=lambda f: f.path):
        if not single_file and not file.path.endswith(MANIFEST_SUFFIXES):
            continue
        try:
            docs = _documents(file.path, file.content)
        except (ValueError, yaml.YAMLError) as exc:
            problems.append(f"{file.path}: not valid YAML or JSON: {str(exc).splitlines()[0]}")
            continue
        for index, doc in enumerate(docs):
            where = f"{file.path} (document {index + 1})"
            if not isinstance(doc, dict) or not doc.get("kind") or not isinstance(
                    doc.get("metadata"), dict) or not doc["metadata"].get("name"):
                problems.append(f"{where}: every resource needs kind and metadata.name")
                continue
            kind = doc["kind"]
            if kind not in SUPPORTED_KINDS["fleet"] + SUPPORTED_KINDS["catalog"]:
                continue  # repositories may mix in other kinds; they are not ours to sync
            if kind not in SUPPORTED_KINDS.get(sync_type, ()):
                problems.append(f"{where}: {kind} does not belong in a ResourceSync of "
                                f"type {sync_type}")
                continue
            if sync_type != "fleet":
                problems.append(f"{where}: catalog ResourceSyncs are not supported")
                continue
            try:
                incoming = _kind(kind).parse(_strip_ignored(doc))
            except ApiError as exc:
                problems.append(f"{where}: {kind}/{doc['metadata']['name']}: "
                                + exc.message.replace("\n", "; "))
                continue
            if incoming.name in fleets:
                problems.append(f"{where}: {kind}/{incoming.name} is defined twice")
                continue
            fleets[incoming.name] = (file.path, incoming)
    if problems:
        raise SyncError("; ".join(problems)[:4000])
    return fleets


# -- applying ---------------------------------------------------------------------------------
