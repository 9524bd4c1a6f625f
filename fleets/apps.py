from django.apps import AppConfig


class FleetsConfig(AppConfig):
    name = "fleets"
    default_auto_field = "django.db.models.BigAutoField"

    def ready(self):
        # Imported once the models are loaded (they use them): the write hooks, task
        # handlers and inventory gauge, and what devices and repos need from fleets, register
        # themselves (fleets.hooks).
        from fleets import hooks, metrics, tasks  # noqa: F401
