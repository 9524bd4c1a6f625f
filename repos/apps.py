from django.apps import AppConfig


class ReposConfig(AppConfig):
    name = "repos"
    default_auto_field = "django.db.models.BigAutoField"

    def ready(self) -> None:
        # Imported once the models are loaded (they use them): the write hooks, task
        # handlers and inventory gauges register themselves with the framework, and the git
        # and HTTP config providers with the renderer.
        from devices.rendering import register_config_provider
        from repos import hooks, metrics, providers, tasks  # noqa: F401

        register_config_provider("gitRef", providers.resolve)
        register_config_provider("httpRef", providers.resolve)
