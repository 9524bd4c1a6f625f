"""Admin pages for repositories and ResourceSyncs (read-only, secrets masked)."""

from django.contrib import admin

from flightctl.admin import LabelFilter, ResourceAdmin
from repos.crypto import mask
from repos.models import Repository, ResourceSync


@admin.register(Repository)
class RepositoryAdmin(ResourceAdmin):
    list_display = ("name", "repo_type", "created_at")
    list_filter = (LabelFilter,)

    @admin.display(description="type")
    def repo_type(self, obj):
        return (obj.spec or {}).get("type")

    @admin.display(description="spec")
    def spec_pretty(self, obj):
        # Even encrypted, secrets are not for the admin page.
        return self._pretty(mask(obj.spec))


@admin.register(ResourceSync)
class ResourceSyncAdmin(ResourceAdmin):
    list_display = ("name", "created_at")
    list_filter = (LabelFilter,)
