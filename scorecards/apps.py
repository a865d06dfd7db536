from django.apps import AppConfig


class ScorecardsConfig(AppConfig):
    name = "scorecards"
    default_auto_field = "django.db.models.BigAutoField"

    def ready(self) -> None:
        from config.kernel.priorities import order_priority_register
        from scorecards.selectors import order_scorecard_impact

        # The fulfilment board sorts releasable picks by what their lateness costs the scorecards.
        order_priority_register("scorecards", order_scorecard_impact)
