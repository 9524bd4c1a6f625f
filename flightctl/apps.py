from django.apps import AppConfig


class FlightctlConfig(AppConfig):
    """The project package doubles as the framework app: events, tokens, organizations."""

    name = "flightctl"
    verbose_name = "Flight Control"
    default_auto_field = "django.db.models.BigAutoField"

    def ready(self) -> None:
        from flightctl import metrics

        metrics.register()
