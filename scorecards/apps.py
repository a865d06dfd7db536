from importlib import import_module

from django.apps import AppConfig


class ScorecardsConfig(AppConfig):
    name = "scorecards"
    default_auto_field = "django.db.models.BigAutoField"

    def ready(self) -> None:
        from django.db.models.signals import post_migrate

        from config.kernel.priorities import order_priority_register
        from scorecards.selectors import order_scorecard_impact

        # The fulfilment board sorts releasable picks by what their lateness costs the scorecards.
        order_priority_register("scorecards", order_scorecard_impact)
        post_migrate.connect(_seed_definitions_after_migrate, sender=self)


def _seed_definitions_after_migrate(sender, apps=None, **kwargs) -> None:
    """The seeded definitions come back after a flush (transactional tests send post_migrate without
    ``apps``): the migrations' own data, only when the table is empty."""
    from django.apps import apps as global_apps

    registry = apps or global_apps
    if registry.get_model("scorecards", "MetricDefinition").objects.exists():
        return
    import_module("scorecards.migrations.0002_channel_metric_definitions").load(registry, None)
    import_module("scorecards.migrations.0004_definitions_follow_channel_rules").forward(registry, None)
    import_module("scorecards.migrations.0006_ebay_twelve_month_definitions").forward(registry, None)
