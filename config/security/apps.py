from django.apps import AppConfig


class SecurityConfig(AppConfig):
    name = "config.security"
    label = "security"
    verbose_name = "Security"
    default_auto_field = "django.db.models.BigAutoField"

    def ready(self) -> None:
        from config.security import checks, db_values, sessions  # noqa: F401 - registers checks and receivers

        db_values.register()
