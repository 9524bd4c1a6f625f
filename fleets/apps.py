from django.apps import AppConfig


class FleetsConfig(AppConfig):
    name = "fleets"
    default_auto_field = "django.db.models.BigAutoField"

    def ready(self):
        # Registers the follow-up work of Device and Fleet writes.
        from fleets import hooks  # noqa: F401
