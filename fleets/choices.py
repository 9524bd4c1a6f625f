"""Typed values of fleets and rollouts (api.md §2.2, service.md §2)."""

from django.db import models


class RolloutReason(models.TextChoices):
    INACTIVE = "Inactive"
    ACTIVE = "Active"
    SUSPENDED = "Suspended"
    WAITING = "Waiting"


class ApprovalMethod(models.TextChoices):
    AUTOMATIC = "automatic"
    MANUAL = "manual"


# The rollout's state is kept in fleet and device annotations (flightctl.api.annotations).
DEFAULT_SUCCESS_THRESHOLD = 90
DEFAULT_UPDATE_TIMEOUT = "24h"
