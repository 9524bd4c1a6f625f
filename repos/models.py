"""Repositories, ResourceSyncs, and the content of config providers frozen per TemplateVersion."""

from __future__ import annotations

from django.db import models

from flightctl.models import DEFAULT_ORG_ID, Resource, ResourceQuerySet


class Repository(Resource):
    """Where configuration and images come from: a git repository, an HTTP server or an OCI
    registry, with the credentials to reach it.

    Devices and fleets name it in ``gitRef``/``httpRef`` config providers, ResourceSyncs read
    fleet manifests from it. Its secrets are stored encrypted (``repos.crypto``) and shown as
    ``*****``. ``status.conditions`` holds ``Accessible``, refreshed by a periodic test.
    """

    class Meta:
        ordering = ["name"]
        verbose_name_plural = "repositories"
        indexes = Resource.resource_indexes("repository")
        constraints = Resource.resource_constraints("repository")


class ResourceSync(Resource):
    """A GitOps link: the fleets described by the YAML/JSON files at ``spec.path`` of a git
    repository at ``spec.targetRevision`` are created, updated and pruned to match.

    Fleets it manages carry ``owner: ResourceSync/<name>`` and can only be changed through git.
    ``status`` holds ``observedCommit``, ``observedGeneration`` and the conditions
    ``Accessible`` -> ``ResourceParsed`` -> ``Synced``, in the order a run checks them.
    """

    class Meta:
        ordering = ["name"]
        indexes = Resource.resource_indexes("resourcesync")
        constraints = Resource.resource_constraints("resourcesync")


class ConfigSnapshot(models.Model):
    """External config content as one render saw it: a git commit or an HTTP body.

    For a fleet, the snapshot belongs to a TemplateVersion and is taken by the first device that
    renders it; every other member then reuses it, so all devices of one TemplateVersion get the
    same files even if the branch moves meanwhile (a new commit becomes a new TemplateVersion
    through the dependency sync). For a standalone device the snapshot only records what its
    last render used, for the dependency sync to compare with.

    ``key`` names the dependency as the reference does (``git:<repo>/<revision>``,
    ``http:<repo>/<suffix>``); ``fingerprint`` is the commit SHA or ``sha256:<hex>`` of the body.
    """

    org_id = models.UUIDField(default=DEFAULT_ORG_ID)
    template_version = models.ForeignKey("fleets.TemplateVersion", null=True, blank=True,
                                         on_delete=models.CASCADE, related_name="+")
    device = models.ForeignKey("devices.Device", null=True, blank=True,
                               on_delete=models.CASCADE, related_name="+")
    repository = models.CharField(max_length=253)
    key = models.CharField(max_length=4096)
    fingerprint = models.CharField(max_length=80)
    #: the HTTP body (base64), empty for git (the commit is read from the local mirror)
    content = models.TextField(blank=True)
    created_at = models.DateTimeField(auto_now_add=True)
    updated_at = models.DateTimeField(auto_now=True)

    objects = ResourceQuerySet.as_manager()

    class Meta:
        constraints = [
            models.UniqueConstraint(fields=["template_version", "key"],
                                    condition=models.Q(template_version__isnull=False),
                                    name="snapshot_tv_key"),
            models.UniqueConstraint(fields=["device", "key"],
                                    condition=models.Q(device__isnull=False),
                                    name="snapshot_device_key"),
        ]
        indexes = [models.Index(fields=["org_id", "repository"], name="snapshot_repository")]

    def __str__(self) -> str:
        return f"{self.key} @ {self.fingerprint}"
