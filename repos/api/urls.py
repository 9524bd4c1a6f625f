from flightctl.api.routing import resource_urls
from repos.api.views import RepositoryViewSet, ResourceSyncViewSet

# The reference has no status subresource for these kinds (api.md §1).
urlpatterns = (resource_urls("repositories", RepositoryViewSet, status=False)
               + resource_urls("resourcesyncs", ResourceSyncViewSet, status=False))
