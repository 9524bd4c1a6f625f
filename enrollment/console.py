"""``/enroll/<name>``: the page of an enrollment request, as the waiting agent prints it."""

from django.urls import path

from enrollment.models import EnrollmentRequest
from flightctl.console import admin_page_of

urlpatterns = [
    path("enroll/<str:name>", admin_page_of(EnrollmentRequest, "enrollment request"),
         name="enroll"),
]
