"""URL map: the v1beta1 user API, health and metrics, the admin UI, the agent's links."""

from django.contrib import admin
from django.urls import include, path

from flightctl.api import openapi, tokens, views
from flightctl.api.authproviders import AuthProviderViewSet
from flightctl.api.routing import resource_urls

handler404 = "flightctl.api.errors.handler404"
handler500 = "flightctl.api.errors.handler500"

urlpatterns = [
    path("healthz", views.healthz),
    path("readyz", views.readyz),
    path("", include("django_prometheus.urls")),
    path("admin/", admin.site.urls),
    path("api/v1/openapi.json", openapi.openapi_view, name="openapi"),
    path("api/v1/version", views.VersionView.as_view()),
    path("api/v1/auth/config", views.AuthConfigView.as_view()),
    path("api/v1/auth/validate", views.AuthValidateView.as_view()),
    path("api/v1/auth/userinfo", views.UserInfoView.as_view()),
    path("api/v1/auth/permissions", views.PermissionsView.as_view()),
    path("api/v1/auth/local/.well-known/openid-configuration",
         tokens.LocalDiscoveryView.as_view()),
    path("api/v1/auth/<str:provider>/token", tokens.TokenView.as_view()),
    path("api/v1/organizations", views.OrganizationListView.as_view()),
    path("api/v1/events", views.EventViewSet.as_view({"get": "list"})),
    *resource_urls("authproviders", AuthProviderViewSet, status=False),
    path("", include("devices.api.urls")),
    path("", include("fleets.api.urls")),
    path("", include("enrollment.api.urls")),
    path("", include("repos.api.urls")),
    # The URLs the agent prints for a device's owner (ui/links.py).
    path("", include("ui.links")),
]
