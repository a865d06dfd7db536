"""The demo's past: 90 days of finished orders per demo account (channels.demo_history), with their returns
and refunds (returns.demo_history), once. It lives in returns: returns may call channels, channels never
imports returns."""

from django.core.management.base import BaseCommand
from django.db import transaction

from channels.demo_history import HISTORY_DAYS, seed_history
from channels.management.commands.seed_demo import DEMO_ACCOUNT_NAMES
from channels.models import ChannelAccount
from returns.demo_history import history_returns_seed


class Command(BaseCommand):
    help = "Load 90 days of finished orders for the demo accounts (after seed_demo); a second run adds nothing."

    def add_arguments(self, parser):
        parser.add_argument("--seed", type=int, default=7)
        parser.add_argument("--days", type=int, default=HISTORY_DAYS)

    def handle(self, *args, seed: int, days: int, **options):
        accounts = list(ChannelAccount.objects.filter(name__in=DEMO_ACCOUNT_NAMES.values()).order_by("pk"))
        if not accounts:
            self.stdout.write("No demo accounts: run seed_demo first.")
            return
        with transaction.atomic():
            made = seed_history(accounts=accounts, seed=seed, days=days, returns_seed=history_returns_seed)
        self.stdout.write(self.style.SUCCESS(f"Demo history: {made} orders over {days} days."))
