from django.apps import AppConfig


class OrdersConfig(AppConfig):
    name = "orders"
    default_auto_field = "django.db.models.BigAutoField"

    def ready(self) -> None:
        from django.db.models.signals import post_migrate

        post_migrate.connect(_sync_roles_after_migrate, sender=self)


def _sync_roles_after_migrate(sender, apps=None, **kwargs) -> None:
    # Models added by later migrations get their permissions after migrate: keep the roles complete.
    # flush (transactional tests) sends post_migrate without ``apps``: use the global registry then.
    from django.apps import apps as global_apps

    from orders.roles import sync_roles

    sync_roles(apps or global_apps)
