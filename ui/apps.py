from django.apps import AppConfig
from django.contrib.admin import apps as admin_apps


class UiConfig(AppConfig):
    """The console's pages, templates and static files."""

    default = True
    name = "ui"
    verbose_name = "Console"


class ConsoleAdminConfig(admin_apps.AdminConfig):
    """Django's admin, running the console's site instead of the stock one."""

    default = False
    default_site = "ui.site.ConsoleSite"
