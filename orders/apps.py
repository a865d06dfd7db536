from django.apps import AppConfig


class OrdersConfig(AppConfig):
    name = "orders"
    default_auto_field = "django.db.models.BigAutoField"

    def ready(self) -> None:
        from django.db.models.signals import post_migrate

        post_migrate.connect(_sync_roles_after_migrate, dispatch_uid="orders.sync_roles")


def _sync_roles_after_migrate(sender, apps=None, **kwargs) -> None:
    # Models added by later migrations get their permissions after migrate: keep the roles complete.
    # post_migrate is sent once per app, and each app's permissions are created by its own signal: act on
    # the last app's, when every app's permissions exist (channels' and scorecards' come after orders').
    # flush (transactional tests) sends post_migrate without ``apps``: use the global registry then.
    from django.apps import apps as global_apps

    from orders.roles import sync_roles

    with_models = [config for config in global_apps.get_app_configs() if config.models_module is not None]
    if with_models and sender is not with_models[-1] and sender.label != with_models[-1].label:
        return
    sync_roles(apps or global_apps)
