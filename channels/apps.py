from django.apps import AppConfig


class ChannelsConfig(AppConfig):
    # Shadows the Django Channels package name; Waybill does not use that package.
    name = "channels"
    default_auto_field = "django.db.models.BigAutoField"

    def ready(self) -> None:
        from channels import receivers  # noqa: F401  (connects the fulfilment, orders and inventory signal receivers)
