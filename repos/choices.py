"""Typed values of repositories, ResourceSyncs and config dependencies (api.md §2.4, §2.5)."""

from django.db import models


class RepoType(models.TextChoices):
    GIT = "git"
    HTTP = "http"
    OCI = "oci"


class OciScheme(models.TextChoices):
    HTTP = "http"
    HTTPS = "https"


class AccessMode(models.TextChoices):
    READ = "Read"
    READ_WRITE = "ReadWrite"


class ResourceSyncType(models.TextChoices):
    FLEET = "fleet"
    CATALOG = "catalog"


class Condition(models.TextChoices):
    ACCESSIBLE = "Accessible"
    RESOURCE_PARSED = "ResourceParsed"
    SYNCED = "Synced"


class Reason(models.TextChoices):
    """Event reasons this app records."""

    REPOSITORY_ACCESSIBLE = "RepositoryAccessible"
    REPOSITORY_INACCESSIBLE = "RepositoryInaccessible"
    REFERENCED_REPOSITORY_UPDATED = "ReferencedRepositoryUpdated"
    RS_ACCESSIBLE = "ResourceSyncAccessible"
    RS_INACCESSIBLE = "ResourceSyncInaccessible"
    RS_COMMIT_DETECTED = "ResourceSyncCommitDetected"
    RS_PARSED = "ResourceSyncParsed"
    RS_PARSING_FAILED = "ResourceSyncParsingFailed"
    RS_SYNCED = "ResourceSyncSynced"
    RS_SYNC_FAILED = "ResourceSyncSyncFailed"
    DEPENDENCY_CHANGE = "DependencyChangeDetected"
    DEPENDENCY_PROBE_FAILED = "DependencySyncProbeFailed"


#: What every response shows instead of a secret; sent back, it means "keep the stored value".
MASK = "*****"

#: Secret fields of a RepositorySpec: (section, key). ``None`` section = top level.
SECRET_FIELDS = (
    ("httpConfig", "password"),
    ("httpConfig", "token"),
    ("httpConfig", "tls.key"),
    ("httpConfig", "tls.crt"),
    ("sshConfig", "sshPrivateKey"),
    ("sshConfig", "privateKeyPassphrase"),
    ("ociAuth", "password"),
)

RESOURCE_SYNC_OWNER = "ResourceSync/"
