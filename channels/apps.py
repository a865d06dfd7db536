from django.apps import AppConfig


class ChannelsConfig(AppConfig):
    # Shadows the Django Channels package name; Waybill does not use that package.
    name = "channels"
    default_auto_field = "django.db.models.BigAutoField"
