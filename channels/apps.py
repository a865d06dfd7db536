from django.apps import AppConfig


class ChannelsConfig(AppConfig):
    # Shadows the Django Channels package name; Waybill does not use that package.
    name = "channels"
    default_auto_field = "django.db.models.BigAutoField"

    def ready(self) -> None:
        # receivers connects the fulfilment, orders and inventory signal receivers; tasks connects the
        # receivers that enqueue what channels' own services announce (channels.signals).
        from channels import receivers, tasks  # noqa: F401
