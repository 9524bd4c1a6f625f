from django.urls import path

from flightctl.api.routing import resource_urls
from repos.api.views import RepositoryOciCheckView, RepositoryViewSet, ResourceSyncViewSet

# The reference has no status subresource for these kinds (api.md §1).
urlpatterns = (resource_urls("repositories", RepositoryViewSet, status=False)
               + resource_urls("resourcesyncs", ResourceSyncViewSet, status=False)
               + [path(f"api/v1/repositories/<str:name>/{check}", RepositoryOciCheckView.as_view(),
                       {"check": check}, name=f"repositories-{check}")
                  for check in ("check-oci-tag", "check-oci-image")])
