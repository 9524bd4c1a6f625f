"""Admin pages for devices: browse, filter by status and labels, inspect spec and status."""

from django.contrib import admin

from devices.choices import DeviceSummaryStatus, DeviceUpdatedStatus
from devices.models import Device
from flightctl.admin import LabelFilter, ResourceAdmin


class SummaryStatusFilter(admin.SimpleListFilter):
    title = "status"
    parameter_name = "summary"

    def lookups(self, request, model_admin):
        return DeviceSummaryStatus.choices

    def queryset(self, request, queryset):
        return queryset.filter(summary_status=self.value()) if self.value() else queryset


class UpdatedStatusFilter(admin.SimpleListFilter):
    title = "update status"
    parameter_name = "updated"

    def lookups(self, request, model_admin):
        return DeviceUpdatedStatus.choices

    def queryset(self, request, queryset):
        return queryset.filter(updated_status=self.value()) if self.value() else queryset


@admin.register(Device)
class DeviceAdmin(ResourceAdmin):
    list_display = ("name", "alias", "owner", "summary_status", "updated_status", "apps_status",
                    "last_seen")
    list_filter = (SummaryStatusFilter, UpdatedStatusFilter, LabelFilter, "owner")
    readonly_fields = ResourceAdmin.readonly_fields + ("last_seen",)
