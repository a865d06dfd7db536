from django.apps import AppConfig


class ReturnsConfig(AppConfig):
    name = "returns"
    default_auto_field = "django.db.models.BigAutoField"

    def ready(self) -> None:
        from returns import receivers, tasks  # noqa: F401
