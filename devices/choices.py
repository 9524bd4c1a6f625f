"""Typed status values of a device (api.md §4.1)."""

from django.db import models


class DeviceSummaryStatus(models.TextChoices):
    ONLINE = "Online"
    DEGRADED = "Degraded"
    ERROR = "Error"
    REBOOTING = "Rebooting"
    POWERED_OFF = "PoweredOff"
    UNKNOWN = "Unknown"
    AWAITING_RECONNECT = "AwaitingReconnect"
    CONFLICT_PAUSED = "ConflictPaused"


class DeviceUpdatedStatus(models.TextChoices):
    UP_TO_DATE = "UpToDate"
    OUT_OF_DATE = "OutOfDate"
    UPDATING = "Updating"
    UNKNOWN = "Unknown"


class ApplicationsSummaryStatus(models.TextChoices):
    HEALTHY = "Healthy"
    DEGRADED = "Degraded"
    ERROR = "Error"
    UNKNOWN = "Unknown"
    NO_APPLICATIONS = "NoApplications"


class DeviceLifecycleStatus(models.TextChoices):
    UNKNOWN = "Unknown"
    ENROLLED = "Enrolled"
    DECOMMISSIONING = "Decommissioning"
    DECOMMISSIONED = "Decommissioned"


class ResourceStatus(models.TextChoices):
    HEALTHY = "Healthy"
    WARNING = "Warning"
    CRITICAL = "Critical"
    ERROR = "Error"
    UNKNOWN = "Unknown"


class IntegrityStatus(models.TextChoices):
    VERIFIED = "Verified"
    FAILED = "Failed"
    UNKNOWN = "Unknown"
    UNSUPPORTED = "Unsupported"


class OsMode(models.TextChoices):
    IMAGE = "image"
    PACKAGE = "package"
