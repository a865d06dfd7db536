"""eBay's transaction defect rate and late shipment rate over 12 months (CHANNELS.md: "3 or 12 months").

eBay evaluates a seller over the past 3 months, or over 12 when the seller had fewer than 400 transactions in
those 3 months. The 3-month versions are active; these 12-month ones are seeded inactive: an ops manager
turns them on in the admin for a seller eBay evaluates over 12 months.
"""

import datetime
from decimal import Decimal as D

from django.db import migrations

UTC_DAYS = " Days are UTC days; the window is the N days ending on the snapshot's day."
TWELVE = (
    " 365 days: eBay's 12-month period, used when the seller had fewer than 400 transactions in the past 3 "
    "months (inactive until an ops manager turns it on)."
)
ACCEPTED = (
    " A ship confirmation counts from the moment the channel accepted it (the outbox message's sent time), "
    "not when the node packed or shipped."
)
SCAN = " A tracking number is valid only once the carrier has scanned it (any tracking event but label created)."
SELLER_CANCEL = (
    " A seller cancel is an order whose cancelled units are charged to the seller (cancel initiator 'seller':"
    " no stock, cannot ship); buyer-requested and marketplace cancels are not."
)


def _warning(threshold: D) -> D:
    return (threshold * D("0.85")).quantize(D("0.0001"))


DEFINITIONS = [
    dict(
        code="transaction_defect_rate_12m",
        name="Transaction defect rate (12 months)",
        formula="seller_cancel",
        numerator_description="Seller cancels for stock + cases closed without resolution",
        denominator_description="Transactions",
        threshold=D("0.0200"),
        seller_threshold=D("0.0050"),
        notes=(
            "Transactions (orders) placed in the window; defects are seller cancels for stock. Cases closed "
            "without seller resolution live only at eBay and are not counted. The seller line is Top Rated's "
            "0.5%." + TWELVE + SELLER_CANCEL + UTC_DAYS
        ),
    ),
    dict(
        code="late_shipment_rate_12m",
        name="Late shipment rate (Top Rated, 12 months)",
        formula="late_scan",
        numerator_description="Transactions shipped late",
        denominator_description="Transactions",
        threshold=D("0.0300"),
        seller_threshold=None,
        notes=(
            "Ship-confirmed transactions by ship-by day (eBay's shipByDate, per line: the earliest); late when "
            "the first carrier scan is after the ship-by, or, never scanned, when the confirmation was accepted "
            "after it." + TWELVE + SCAN + ACCEPTED + UTC_DAYS
        ),
    ),
]


def forward(apps, schema_editor):
    MetricDefinition = apps.get_model("scorecards", "MetricDefinition")
    for row in DEFINITIONS:
        MetricDefinition.objects.get_or_create(
            channel_kind="ebay",
            code=row["code"],
            version=1,
            defaults=dict(
                name=row["name"],
                formula=row["formula"],
                numerator_description=row["numerator_description"],
                denominator_description=row["denominator_description"],
                window_days=365,
                comparison="lte",
                threshold=row["threshold"],
                warning_threshold=_warning(row["threshold"]),
                seller_threshold=row["seller_threshold"],
                is_active=False,
                effective_from=datetime.date(2026, 1, 1),
                notes=row["notes"],
            ),
        )


def backward(apps, schema_editor):
    MetricDefinition = apps.get_model("scorecards", "MetricDefinition")
    MetricDefinition.objects.filter(
        channel_kind="ebay", code__in=[row["code"] for row in DEFINITIONS], version=1, snapshots__isnull=True
    ).delete()


class Migration(migrations.Migration):
    dependencies = [("scorecards", "0005_order_facts")]
    operations = [migrations.RunPython(forward, backward)]
