"""The Device: one managed edge system, its desired spec and its reported status."""

from __future__ import annotations

from django.db import models
from django.db.models.fields.json import KT
from django.utils import timezone

from flightctl.models import Resource


def _status_column(path: str):
    # Generated columns keep the selectable status fields indexable without a second source of
    # truth: PostgreSQL recomputes them from the JSON on every write.
    return models.GeneratedField(
        expression=KT(path), output_field=models.CharField(max_length=64), db_persist=True
    )


class Device(Resource):
    """A physical or virtual Linux system enrolled with the service, named by the fingerprint
    of its identity key.

    ``spec`` is what the device should run (set directly, or by its owning fleet's rollout);
    ``status`` is what its agent last reported, with the service-side summary fields
    (``summary``, ``updated``, ``applicationsSummary``, ``lifecycle``) computed on every write.
    ``last_seen`` is kept apart from ``status`` because the reference never serialises it and
    because agents refresh it far more often than anything else changes.
    """

    last_seen = models.DateTimeField(null=True, blank=True)
    # The spec as the agent receives it (templates resolved, providers merged), its version
    # (monotonic per device, 0 = never rendered) and a hash of its content, which gates
    # re-renders so the version only moves when the content does.
    rendered_spec = models.JSONField(null=True, blank=True)
    rendered_version = models.BigIntegerField(default=0)
    rendered_hash = models.CharField(max_length=64, blank=True)
    rendered_at = models.DateTimeField(null=True, blank=True)
    # Conditions the service owns (SpecValid, MultipleOwners). Kept apart from status.conditions
    # because agents replace their status wholesale; merged into status.conditions on output.
    service_conditions = models.JSONField(default=list, blank=True)
    # Set in the transaction that creates or relabels the device; the fleets app's adoption
    # pass (fleets.tasks.adopt_pending) clears it after recomputing the owner, a page of
    # devices at a time, so a mass enrollment is adopted in bulk rather than device by device.
    owner_pending = models.BooleanField(default=False)
    # Set with a new console session (devices.console), cleared by the agent API's /rendered
    # when it hands the session to the agent: a session opened while the agent was not
    # waiting still ends its next long-poll at once. Not part of the representation.
    console_pending = models.BooleanField(default=False)
    alias = models.GeneratedField(
        expression=KT("labels__alias"), output_field=models.CharField(max_length=64),
        db_persist=True,
    )
    summary_status = _status_column("status__summary__status")
    updated_status = _status_column("status__updated__status")
    apps_status = _status_column("status__applicationsSummary__status")
    lifecycle_status = _status_column("status__lifecycle__status")
    os_mode = _status_column("status__capabilities__osMode")

    class Meta:
        ordering = ["name"]
        indexes = Resource.resource_indexes("device") + [
            models.Index(fields=["org_id", "summary_status"], name="device_summary"),
            models.Index(fields=["org_id", "updated_status"], name="device_updated"),
            models.Index(fields=["org_id", "apps_status"], name="device_apps"),
            models.Index(fields=["org_id", "lifecycle_status"], name="device_lifecycle"),
            models.Index(fields=["org_id", "alias"], name="device_alias"),
            # The periodic connectivity check (devices.health.connectivity_changed) runs
            # across organizations: summary first, then a last_seen range.
            models.Index(fields=["summary_status", "last_seen"], name="device_connectivity"),
            models.Index(fields=["org_id", "id"], condition=models.Q(owner_pending=True),
                         name="device_owner_pending"),
        ]
        constraints = Resource.resource_constraints("device")


class DeviceLabel(models.Model):
    """One label of one device, a row of a database view over ``Device.labels``.

    ``GET /labels`` lists the distinct ``key=value`` pairs of the devices a selector picks.
    The view (devices migration 0006: ``jsonb_each_text`` over the labels column) turns each
    label into a row, so the distinct pairs, their ordering and the field selectors on key and
    value are plain SQL over it instead of Python over every device. Read-only.
    """

    device = models.ForeignKey(Device, on_delete=models.DO_NOTHING, related_name="+")
    org_id = models.UUIDField()
    device_name = models.CharField(max_length=253)
    device_labels = models.JSONField()
    key = models.TextField()
    value = models.TextField()

    class Meta:
        managed = False
        db_table = "devices_devicelabel"


class ConsoleSession(models.Model):
    """One remote console session of a device, from the user's WebSocket to its end.

    The row is the rendezvous of the two processes a session spans: the user API process
    holding the user's WebSocket writes it (with ``bridge``, the address where that process
    waits for the device's end) in the transaction that lists the session on the device; the
    agent API process that receives the device's gRPC stream for the session finds it here and
    connects to ``bridge``. Whichever side sees the session end first deletes the row, removes
    the session from the device and records the closing event; the other finds nothing to do.
    ``id`` is the session ID the device sees. ``seen_at`` is refreshed by the process holding
    the user's WebSocket while it holds it; a row nobody refreshed for twice
    ``console_session_timeout`` belongs to processes that died without closing it (both ends
    gone at once, e.g. a server killed), and the ``console-cleanup`` job closes it.
    """

    id = models.UUIDField(primary_key=True)
    org_id = models.UUIDField()
    device_name = models.CharField(max_length=253)
    actor = models.CharField(max_length=300)
    bridge = models.CharField(max_length=300)
    created_at = models.DateTimeField(auto_now_add=True)
    connected_at = models.DateTimeField(null=True, blank=True)
    seen_at = models.DateTimeField(default=timezone.now)

    class Meta:
        indexes = [models.Index(fields=["org_id", "device_name"], name="console_device"),
                   models.Index(fields=["seen_at"], name="console_seen")]

    def __str__(self) -> str:
        return f"console {self.id} of {self.device_name}"
