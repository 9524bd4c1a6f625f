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


# Annotations: the reference keeps rollout state in these keys; clients read them.
FLEET_TV = "fleet-controller/templateVersion"
DEPLOYING_TV = "fleet-controller/deployingTemplateVersion"
BATCH_NUMBER = "fleet-controller/batchNumber"
ROLLOUT_APPROVED = "fleet-controller/rolloutApproved"
APPROVAL_METHOD = "fleet-controller/rolloutApprovalMethod"
COMPLETION_REPORT = "fleet-controller/lastBatchCompletionReport"
SELECTION_DIGEST = "fleet-controller/deviceSelectionConfigDigest"
ROLLOUT_PAUSED = "fleet-controller/rolloutPaused"
REPORTED_BATCH = "fleet-controller/reportedBatch"

DEVICE_TV = "fleet-controller/templateVersion"
RENDERED_TV = "fleet-controller/renderedTemplateVersion"
SELECTED = "fleet-controller/selectedForRollout"
ROLLOUT_ERROR = "fleet-controller/lastRolloutError"

DEFAULT_SUCCESS_THRESHOLD = 90
DEFAULT_UPDATE_TIMEOUT = "24h"
