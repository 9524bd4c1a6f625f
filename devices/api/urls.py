from devices.api.views import DeviceViewSet
from flightctl.api.routing import resource_urls

urlpatterns = resource_urls("devices", DeviceViewSet, extra=[("lastseen", {"get": "lastseen"})])
