from django.urls import path

from enrollment.api.views import (
    CertificateSigningRequestViewSet,
    EnrollmentConfigView,
    EnrollmentRequestViewSet,
)
from flightctl.api.routing import resource_urls

urlpatterns = [
    path("api/v1/enrollmentconfig", EnrollmentConfigView.as_view()),
    *resource_urls("enrollmentrequests", EnrollmentRequestViewSet,
                   extra=[("approval", {"put": "approval"})]),
    *resource_urls("certificatesigningrequests", CertificateSigningRequestViewSet,
                   extra=[("approval", {"put": "approval"})]),
]
