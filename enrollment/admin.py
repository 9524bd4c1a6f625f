"""Admin pages for enrollment: browse the waiting room and certificate requests (read-only;
approval goes through the API so it signs, creates the device and records events)."""

from django.contrib import admin

from enrollment.models import CertificateSigningRequest, EnrollmentRequest
from flightctl.admin import LabelFilter, ResourceAdmin


@admin.register(EnrollmentRequest)
class EnrollmentRequestAdmin(ResourceAdmin):
    list_display = ("name", "created_at")
    list_filter = (LabelFilter,)
    exclude = ResourceAdmin.exclude + ("tpm_challenge_digest", "tpm_challenge_expires_at")


@admin.register(CertificateSigningRequest)
class CertificateSigningRequestAdmin(ResourceAdmin):
    list_display = ("name", "owner", "created_at")
    list_filter = (LabelFilter, "owner")
