from django.urls import path

from fleets.api.rollout_views import RolloutActionView, TemplateVersionViewSet
from fleets.api.views import FleetViewSet
from flightctl.api.routing import resource_urls

urlpatterns = resource_urls("fleets", FleetViewSet) + [
    path("api/v1/fleets/<str:fleet>/templateversions",
         TemplateVersionViewSet.as_view({"get": "list"})),
    path("api/v1/fleets/<str:fleet>/templateversions/<str:name>",
         TemplateVersionViewSet.as_view({"get": "retrieve", "delete": "destroy"})),
    path("api/v1/fleets/<str:name>/rollout/<str:action>", RolloutActionView.as_view()),
] + [
    # Fleet-wide application stop/start (devices/lifecycle.py); no fleet-wide restart.
    path(f"api/v1/fleets/<str:name>/applications/<str:appname>/actions/{action}",
         FleetViewSet.as_view({"post": "application_action"}), {"action": action})
    for action in ("stop", "start")
]
