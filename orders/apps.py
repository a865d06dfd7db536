from django.apps import AppConfig


class OrdersConfig(AppConfig):
    name = "orders"
    default_auto_field = "django.db.models.BigAutoField"

    def ready(self) -> None:
        from django.db.models.signals import post_migrate

        post_migrate.connect(_sync_roles_after_migrate, dispatch_uid="orders.sync_roles")


def _sync_roles_after_migrate(sender, apps=None, using="default", **kwargs) -> None:
    # Models added by later migrations get their permissions after migrate: keep the roles complete.
    # post_migrate reaches orders before the apps listed after it have had their permissions created
    # (each app's create_permissions runs on its own signal), so create every app's permissions first.
    # flush (transactional tests) sends post_migrate without ``apps``: use the global registry then.
    from django.apps import apps as global_apps
    from django.contrib.auth.management import create_permissions

    from orders.roles import sync_roles

    registry = apps or global_apps
    for app_config in global_apps.get_app_configs():
        create_permissions(app_config, verbosity=0, using=using, apps=registry)
    sync_roles(registry)
