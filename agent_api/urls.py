"""The agent API's URL map: the reference's agent operations, plus the HTTPS transport of the
TPM credential challenge (docs/identity.md). The ``/rendered`` long-poll and status PUTs are
answered ahead of Django by :mod:`agent_api.hotpath`."""

from django.urls import path

from agent_api import views

handler404 = "flightctl.api.errors.handler404"
handler500 = "flightctl.api.errors.handler500"

urlpatterns = [
    path("api/v1/enrollmentrequests", views.enrollment_requests),
    path("api/v1/enrollmentrequests/<str:name>", views.enrollment_request),
    path("api/v1/enrollmentrequests/<str:name>/tpmchallenge", views.tpm_challenge),
    path("api/v1/enrollmentrequests/<str:name>/tpmchallenge/response",
         views.tpm_challenge_response),
    path("api/v1/devices/<str:name>/status", views.device_status),
    path("api/v1/certificatesigningrequests", views.certificate_signing_requests),
    path("api/v1/certificatesigningrequests/<str:name>", views.certificate_signing_request),
]
