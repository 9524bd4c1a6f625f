"""Typed values of enrollment: condition types and reasons, approval states (api.md §2.6, §2.7)."""

from django.db import models


class ConditionType(models.TextChoices):
    APPROVED = "Approved"
    DENIED = "Denied"
    FAILED = "Failed"
    TPM_VERIFIED = "TPMVerified"


class TPMReason(models.TextChoices):
    """Reasons of the ``TPMVerified`` condition, in the order a TPM enrollment passes them."""

    CHALLENGE_REQUIRED = "TPMChallengeRequired"
    VERIFICATION_FAILED = "TPMVerificationFailed"
    CHALLENGE_SUCCEEDED = "TPMChallengeSucceeded"
    CHALLENGE_FAILED = "TPMChallengeFailed"


# A device's integrity status and OS mode are the device's choices (devices.choices).


class Usage(models.TextChoices):
    CLIENT_AUTH = "clientAuth"
    SERVER_AUTH = "serverAuth"
    NOT_CA = "CA:false"
