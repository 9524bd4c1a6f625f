from fleets.api.views import FleetViewSet
from flightctl.api.routing import resource_urls

urlpatterns = resource_urls("fleets", FleetViewSet)
