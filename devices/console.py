"""``/manage/<name>``: the page of a device, as the enrolled agent prints it."""

from django.urls import path

from devices.models import Device
from flightctl.console import admin_page_of

urlpatterns = [
    path("manage/<str:name>", admin_page_of(Device, "device"), name="manage"),
]
