from django.apps import AppConfig


class FlightctlConfig(AppConfig):
    """The project package doubles as the framework app: events, tokens, organizations."""

    name = "flightctl"
    verbose_name = "Flight Control"
    default_auto_field = "django.db.models.BigAutoField"

    def ready(self) -> None:
        # Imported once the models are loaded (they use them): the task queue's gauges and
        # the framework's periodic jobs register themselves.
        from flightctl import alerts, jobs, metrics  # noqa: F401

        metrics.register()
