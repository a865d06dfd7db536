"""Version 1 of each channel's seller metrics: thresholds and windows as data, never code constants.

Warning lines follow the operators' rule of thumb: well inside the penalty (about 15% of its
threshold, or the tighter published early-warning line where there is one).
"""

import datetime
from decimal import Decimal as D

from django.db import migrations

# (channel, code, name, numerator, denominator, window days, comparison, threshold, warning)
DEFINITIONS = [
    ("amazon", "order_defect_rate", "Order Defect Rate", "Orders with negative feedback, an A-to-z claim or a chargeback", "Orders (MFN and AFN apart)", 60, "lte", D("0.0100"), D("0.0050")),
    ("amazon", "late_shipment_rate", "Late Shipment Rate (10 days)", "MFN orders ship-confirmed after the ship-by", "MFN orders", 10, "lte", D("0.0400"), D("0.0250")),
    ("amazon", "late_shipment_rate_30d", "Late Shipment Rate (30 days)", "MFN orders ship-confirmed after the ship-by", "MFN orders", 30, "lte", D("0.0400"), D("0.0250")),
    ("amazon", "pre_fulfillment_cancel_rate", "Pre-fulfillment Cancel Rate", "Seller-cancelled MFN orders (buyer cancels excluded)", "MFN orders", 7, "lte", D("0.0250"), D("0.0213")),
    ("amazon", "valid_tracking_rate", "Valid Tracking Rate", "Shipments with a carrier scan", "Ship-confirmed shipments", 30, "gte", D("0.9500"), D("0.9575")),
    ("amazon", "on_time_delivery", "On-Time Delivery (target)", "Delivered by the promise", "Shipments with tracking", 14, "gte", D("0.9700"), D("0.9745")),
    ("walmart", "cancellation_rate", "Cancellation rate", "Seller-cancelled orders", "Orders", 30, "lte", D("0.0200"), D("0.0150")),
    ("walmart", "on_time_delivery", "On-time delivery", "Delivered by the expected date", "Orders", 30, "gte", D("0.9000"), D("0.9500")),
    ("walmart", "valid_tracking_rate", "Valid tracking rate", "Orders with valid tracking", "Orders", 30, "gte", D("0.9900"), D("0.9915")),
    ("walmart", "refund_rate", "Refund / return rate (seller-responsible)", "Seller-responsible refunds and returns", "Orders", 30, "lte", D("0.0600"), D("0.0510")),
    ("ebay", "transaction_defect_rate", "Transaction defect rate", "Seller cancels for stock + cases closed without resolution", "Transactions", 90, "lte", D("0.0200"), D("0.0050")),
    ("ebay", "late_shipment_rate", "Late shipment rate (Top Rated)", "Transactions shipped late", "Transactions", 90, "lte", D("0.0300"), D("0.0255")),
    ("ebay", "tracking_uploaded", "Tracking uploaded (Top Rated)", "Transactions with tracking uploaded on time", "Transactions", 90, "gte", D("0.9500"), D("0.9575")),
    ("tiktok", "late_dispatch_rate", "Late Dispatch Rate", "Orders not carrier-scanned within the dispatch SLA", "Orders", 30, "lte", D("0.0400"), D("0.0340")),
    ("tiktok", "seller_fault_cancellation_rate", "Seller-Fault Cancellation Rate", "Seller-fault cancellations", "Orders", 30, "lte", D("0.0250"), D("0.0213")),
    ("tiktok", "valid_tracking_rate", "Valid Tracking Rate", "Orders with valid tracking", "Orders", 30, "gte", D("0.9500"), D("0.9575")),
    ("shopify", "ship_on_time_rate", "Ship on time (own SLA)", "Orders shipped by the computed ship-by", "Orders", 30, "gte", D("0.9500"), D("0.9575")),
    ("shopify", "cancel_rate", "Cancel rate (own SLA)", "Seller-cancelled orders", "Orders", 30, "lte", D("0.0250"), D("0.0213")),
    ("shopify", "refund_rate", "Refund rate (own SLA)", "Refunded orders", "Orders", 30, "lte", D("0.0500"), D("0.0425")),
]


def load(apps, schema_editor):
    MetricDefinition = apps.get_model("scorecards", "MetricDefinition")
    for channel, code, name, num, den, window, comparison, threshold, warning in DEFINITIONS:
        MetricDefinition.objects.get_or_create(
            channel_kind=channel,
            code=code,
            version=1,
            defaults=dict(
                name=name,
                numerator_description=num,
                denominator_description=den,
                window_days=window,
                comparison=comparison,
                threshold=threshold,
                warning_threshold=warning,
                effective_from=datetime.date(2026, 1, 1),
                notes="Seeded from the channel's published standard; edit by adding a new version.",
            ),
        )


def unload(apps, schema_editor):
    apps.get_model("scorecards", "MetricDefinition").objects.filter(version=1).delete()


class Migration(migrations.Migration):
    dependencies = [("scorecards", "0001_initial")]
    operations = [migrations.RunPython(load, unload)]
