"""Admin pages for fleets."""

from django.contrib import admin

from fleets.models import Fleet
from flightctl.admin import LabelFilter, ResourceAdmin


@admin.register(Fleet)
class FleetAdmin(ResourceAdmin):
    list_display = ("name", "owner", "generation", "created_at")
    list_filter = (LabelFilter, "owner")
