"""Framework models shared by every app: the resource base, organizations, events, API tokens."""

from __future__ import annotations

import hashlib
import secrets
import uuid

from django.conf import settings
from django.contrib.postgres.indexes import GinIndex
from django.db import models

DEFAULT_ORG_ID = uuid.UUID("00000000-0000-0000-0000-000000000000")


class Organization(models.Model):
    """A tenant. Every resource lives in exactly one organization.

    The embedded default has a single organization with the all-zero UUID, which is also the
    organization the reference assigns to agents whose certificate carries none.
    """

    id = models.UUIDField(primary_key=True, default=uuid.uuid4)
    display_name = models.CharField(max_length=253, blank=True)
    external_id = models.CharField(max_length=253, blank=True)

    class Meta:
        # A login provider's organization names (``external_id``) map to one row each: the
        # row is created on first sight, so two logins must never create two.
        constraints = [models.UniqueConstraint(
            fields=["external_id"], condition=~models.Q(external_id=""),
            name="organization_external_id")]

    def __str__(self) -> str:
        return self.display_name or str(self.id)


class ResourceQuerySet(models.QuerySet):
    def restrict(self, org_id) -> ResourceQuerySet:
        """Only the rows of one organization: every API collection starts here."""
        return self.filter(org_id=org_id)


class Resource(models.Model):
    """A Flight Control API object: envelope metadata plus a JSON spec and status.

    ``generation`` counts spec changes (1 on create), ``resource_version`` counts every write
    (the optimistic-concurrency token clients send back). Labels are JSONB with a GIN index so
    label selectors become ``@>`` / ``?`` lookups. Names are unique per organization.
    """

    org_id = models.UUIDField(default=DEFAULT_ORG_ID, db_index=False)
    name = models.CharField(max_length=253)
    labels = models.JSONField(default=dict, blank=True)
    annotations = models.JSONField(default=dict, blank=True)
    owner = models.CharField(max_length=512, null=True, blank=True)
    generation = models.BigIntegerField(default=1)
    resource_version = models.BigIntegerField(default=1)
    created_at = models.DateTimeField(auto_now_add=True)
    updated_at = models.DateTimeField(auto_now=True)
    spec = models.JSONField(default=dict, blank=True)
    status = models.JSONField(default=dict, blank=True)

    objects = ResourceQuerySet.as_manager()

    class Meta:
        abstract = True
        ordering = ["name"]

    def __str__(self) -> str:
        return self.name

    @classmethod
    def resource_indexes(cls, prefix: str) -> list:
        """The indexes every resource table needs: keyset paging, labels, owner, age."""
        return [
            GinIndex(fields=["labels"], name=f"{prefix}_labels_gin"),
            models.Index(fields=["org_id", "owner"], name=f"{prefix}_owner"),
            models.Index(fields=["org_id", "created_at"], name=f"{prefix}_created"),
        ]

    @classmethod
    def resource_constraints(cls, prefix: str) -> list:
        return [models.UniqueConstraint(fields=["org_id", "name"], name=f"{prefix}_org_name")]


def new_event_name() -> str:
    return str(uuid.uuid4())


class EventType(models.TextChoices):
    NORMAL = "Normal"
    WARNING = "Warning"


class Event(models.Model):
    """Something that happened to a resource, kept for the audit trail and ``GET /events``.

    Events are written in the same transaction as the change they describe, so the trail never
    claims a change that was rolled back. ``name`` is a UUID, as in the reference.
    """

    org_id = models.UUIDField(default=DEFAULT_ORG_ID)
    name = models.CharField(max_length=64, default=new_event_name)
    created_at = models.DateTimeField(auto_now_add=True)
    involved_kind = models.CharField(max_length=64)
    involved_name = models.CharField(max_length=253)
    reason = models.CharField(max_length=64)
    type = models.CharField(max_length=16, choices=EventType.choices, default=EventType.NORMAL)
    message = models.TextField(blank=True)
    actor = models.CharField(max_length=300)
    source_component = models.CharField(max_length=64, default="flightctl-api")
    details = models.JSONField(null=True, blank=True)

    objects = ResourceQuerySet.as_manager()

    class Meta:
        indexes = [
            models.Index(fields=["org_id", "-created_at", "-name"], name="event_created"),
            models.Index(fields=["org_id", "involved_kind", "involved_name"], name="event_obj"),
            models.Index(fields=["org_id", "reason"], name="event_reason"),
        ]

    def __str__(self) -> str:
        return f"{self.involved_kind}/{self.involved_name}: {self.reason}"


def _hash_token(token: str) -> str:
    return hashlib.sha256(token.encode()).hexdigest()


class ApiToken(models.Model):
    """A bearer token for a local user. Only its SHA-256 is stored; the token is shown once."""

    user = models.ForeignKey(settings.AUTH_USER_MODEL, on_delete=models.CASCADE, related_name="+")
    digest = models.CharField(max_length=64, unique=True)
    description = models.CharField(max_length=200, blank=True)
    created_at = models.DateTimeField(auto_now_add=True)
    expires_at = models.DateTimeField(null=True, blank=True)

    def __str__(self) -> str:
        return f"token of {self.user} ({self.digest[:8]}…)"

    @classmethod
    def issue(cls, user, description: str = "", expires_at=None) -> str:
        token = "fctl_" + secrets.token_urlsafe(32)
        cls.objects.create(
            user=user, digest=_hash_token(token), description=description, expires_at=expires_at
        )
        return token

    @classmethod
    def lookup(cls, token: str):
        return cls.objects.select_related("user").filter(digest=_hash_token(token)).first()


class PeriodicJob(models.Model):
    """A periodic duty (rollout progression, connectivity checks, event retention).

    Each job runs as a chain of django-q tasks, each scheduling the next. The row is the
    cluster-wide lock and clock: a tick runs only while holding the row (``FOR UPDATE SKIP
    LOCKED``) and only when ``next_due`` has come, so however many servers and workers run, a
    job runs once per interval; a chain lost with a dead worker is re-seeded by a django-q
    schedule that checks for stale rows every minute.
    """

    name = models.CharField(max_length=64, primary_key=True)
    next_due = models.DateTimeField()
    last_run = models.DateTimeField(null=True, blank=True)
    last_error = models.TextField(blank=True)

    def __str__(self) -> str:
        return self.name


class QueuedOnce(models.Model):
    """A coalesced task is queued: at most one ``(name, key)`` task of :func:`flightctl.tasks.
    enqueue_once` waits in the queue at a time (e.g. one adoption pass per organization,
    however many devices its approvals flag).

    The row is inserted with its task, in the transaction that asks for the work, and deleted
    by the task's run before its handler starts (:func:`flightctl.tasks.release_once`). The
    invariant that makes this safe (no request for work is lost) is written and enforced
    there.
    """

    name = models.CharField(max_length=64)
    key = models.CharField(max_length=128)
    queued_at = models.DateTimeField(auto_now_add=True)

    class Meta:
        constraints = [models.UniqueConstraint(fields=["name", "key"],
                                               name="queuedonce_unique")]

    def __str__(self) -> str:
        return f"{self.name}/{self.key}"


class Checkpoint(models.Model):
    """Where a periodic consumer of the database left off, and the state it carries between
    runs (e.g. the alert exporter's active alerts and the time of the last event it read).
    One row per (consumer, key); written in the transaction of the work it records."""

    consumer = models.CharField(max_length=64)
    key = models.CharField(max_length=128)
    value = models.JSONField(default=dict)
    updated_at = models.DateTimeField(auto_now=True)

    class Meta:
        constraints = [models.UniqueConstraint(fields=["consumer", "key"],
                                               name="checkpoint_unique")]

    def __str__(self) -> str:
        return f"{self.consumer}/{self.key}"


class AuthProvider(Resource):
    """A login provider created through the API (``/api/v1/authproviders``): an OpenID Connect
    issuer or an OAuth2 server whose tokens the user API accepts, beside the one configured
    statically (``oidc_issuer``).

    The spec is the reference's ``OIDCProviderSpec`` / ``OAuth2ProviderSpec``; its
    ``clientSecret`` is sealed with the server key (flightctl/sealing.py) and shown as
    ``*****``. Every process reads the enabled providers from this table through a short
    cache keyed by the table's version (flightctl/api/providers.py), so a new, changed or
    deleted provider takes effect everywhere within seconds.
    """

    class Meta(Resource.Meta):
        indexes = Resource.resource_indexes("authprovider")
        constraints = Resource.resource_constraints("authprovider")


class OrganizationMembership(models.Model):
    """A user's membership of an organization, with the roles it holds there.

    Users of a login provider get theirs from their token's claims (the provider's
    ``organizationAssignment`` and org-scoped ``roleAssignment``, flightctl/api/claims.py),
    rewritten only when the claims change; ``provider`` names the provider that granted it
    (empty: granted by hand). A local user without any membership works in the default
    organization, as before organizations were modelled. Roles held outside any organization
    (a bare ``flightctl-operator``) stay the user's Django groups and apply in all its
    organizations.
    """

    org = models.ForeignKey(Organization, on_delete=models.CASCADE, related_name="memberships")
    user = models.ForeignKey(settings.AUTH_USER_MODEL, on_delete=models.CASCADE,
                             related_name="+")
    roles = models.JSONField(default=list, blank=True)
    provider = models.CharField(max_length=253, blank=True)
    updated_at = models.DateTimeField(auto_now=True)

    class Meta:
        constraints = [models.UniqueConstraint(fields=["user", "org"],
                                               name="membership_user_org")]

    def __str__(self) -> str:
        return f"{self.user} in {self.org_id}"


class RateLimitCounter(models.Model):
    """Requests counted in one fixed window for one key (a client address or a user on one
    class of endpoints; flightctl/api/ratelimit.py). One upsert per request counts and reads
    it, so the limit holds across every worker process and server. Rows of past windows are
    deleted by the ``rate-limit-cleanup`` job. The table is UNLOGGED: counters are not worth
    a WAL write each, and losing them in a crash only resets the windows."""

    key = models.CharField(max_length=300)
    window_start = models.DateTimeField()
    hits = models.IntegerField(default=0)

    class Meta:
        constraints = [models.UniqueConstraint(fields=["key", "window_start"],
                                               name="ratelimit_key_window")]
        indexes = [models.Index(fields=["window_start"], name="ratelimit_window")]

    def __str__(self) -> str:
        return f"{self.key}@{self.window_start}: {self.hits}"
