from django.core.management.base import BaseCommand

from scorecards.services import scorecards_backfill


class Command(BaseCommand):
    help = "Recompute every metric snapshot for the last N days (default 90), showing progress."

    def add_arguments(self, parser):
        parser.add_argument("--days", type=int, default=90)

    def handle(self, *args, days: int, **options):
        def progress(run):
            self.stdout.write(f"  {run.days_done}/{run.days_total} days, {run.snapshots} snapshots")

        run = scorecards_backfill(actor="manage:scorecards_backfill", days=days, on_progress=progress)
        self.stdout.write(self.style.SUCCESS(f"Backfill {run.first_day}..{run.last_day}: {run.snapshots} snapshots."))
