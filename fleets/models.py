"""The Fleet: a set of devices chosen by label selector that share one device template."""

from __future__ import annotations

from django.db import models

from flightctl.models import DEFAULT_ORG_ID, Resource, ResourceQuerySet


class Fleet(Resource):
    """A group of devices selected by ``spec.selector`` that should all run ``spec.template``.

    Each device matched by exactly one fleet is owned by it (``owner: Fleet/<name>``) and gets
    the template rendered for it, rolled out according to ``spec.rolloutPolicy``. Fleets created
    by a ResourceSync are owned by it and can only be changed through git.
    """

    class Meta:
        ordering = ["name"]
        indexes = Resource.resource_indexes("fleet")
        constraints = Resource.resource_constraints("fleet")


class TemplateVersion(models.Model):
    """An immutable snapshot of a fleet's device template, taken at each valid template change.

    Named ``v<fleet generation>`` (deterministic, so creating it twice is harmless), owned by
    its fleet and deleted with it. Rollouts copy the newest one, with placeholders resolved per
    device, into each member device's spec; ``status`` keeps the template's DeviceSpec fields.
    """

    org_id = models.UUIDField(default=DEFAULT_ORG_ID)
    fleet = models.ForeignKey(Fleet, on_delete=models.CASCADE, related_name="template_versions")
    name = models.CharField(max_length=253)
    created_at = models.DateTimeField(auto_now_add=True)
    spec = models.JSONField(default=dict)
    #: the template's DeviceSpec fields, frozen (placeholders kept)
    status = models.JSONField(default=dict)
    labels = models.JSONField(default=dict, blank=True)

    objects = ResourceQuerySet.as_manager()

    class Meta:
        ordering = ["-created_at", "-name"]
        constraints = [
            models.UniqueConstraint(fields=["fleet", "name"], name="templateversion_fleet_name")
        ]
        indexes = [models.Index(fields=["fleet", "-created_at", "-name"], name="tv_newest")]

    def __str__(self) -> str:
        return f"{self.fleet.name}/{self.name}"
