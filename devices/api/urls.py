from django.urls import path

from devices.api.views import DeviceViewSet
from devices.lifecycle import DEVICE_ACTIONS
from flightctl.api.routing import resource_urls

urlpatterns = resource_urls("devices", DeviceViewSet, extra=[
    ("lastseen", {"get": "lastseen"}),
    ("rendered", {"get": "rendered"}),
    ("decommission", {"put": "decommission"}),
]) + [
    # One route per action (not a path parameter) so an unknown action is a plain 404.
    path(f"api/v1/devices/<str:name>/applications/<str:appname>/actions/{action}",
         DeviceViewSet.as_view({"post": "application_action"}), {"action": action},
         name=f"devices-application-{action}")
    for action in DEVICE_ACTIONS
] + [
    path("api/v1/deviceactions/resume", DeviceViewSet.as_view({"post": "resume"}),
         name="deviceactions-resume"),
    path("api/v1/labels", DeviceViewSet.as_view({"get": "labels"}), name="labels"),
]
