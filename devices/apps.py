from django.apps import AppConfig

from flightctl.backup import on_restored


class DevicesConfig(AppConfig):
    name = "devices"
    default_auto_field = "django.db.models.BigAutoField"

    def ready(self) -> None:
        # Imported once the models are loaded (they use them): the write hooks, task
        # handlers and inventory gauges register themselves with the framework.
        from devices import hooks, metrics, restore, tasks  # noqa: F401
        from devices.console import websocket  # noqa: F401 - the console's WebSocket route

        on_restored(restore.restored)
