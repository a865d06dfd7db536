"""Version 1 of every channel's seller metric, brought to CHANNELS.md "Seller performance metrics":
the formula that computes it, the exact comparison (Amazon's "< 4%" is a breach at 4%), the default
warning line 15% of the margin inside the penalty, the seller-set lines operators use, the Account
Health metric it is compared with, and the reading taken where the rule is ambiguous.

Rows an operator already changed from the 0002 seed keep their thresholds; the formula, the
marketplace metric and the notes are set on every v1 row.
"""

from decimal import Decimal as D

from django.db import migrations

SHARE = D("0.15")


def _warning(threshold: D, comparison: str) -> D:
    if comparison in ("lt", "lte"):
        return (threshold * (1 - SHARE)).quantize(D("0.0001"))
    return (threshold + (1 - threshold) * SHARE).quantize(D("0.0001"))


UTC_DAYS = " Days are UTC days; the window is the N days ending on the snapshot's day."
MFN_ONLY = " Marketplace-fulfilled orders (AFN, WFS, FBT) never count."
ACCEPTED = (
    " A ship confirmation counts from the moment the channel accepted it (the outbox message's sent time), "
    "not when the node packed or shipped."
)
SCAN = " A tracking number is valid only once the carrier has scanned it (any tracking event but label created)."
SELLER_CANCEL = (
    " A seller cancel is an order whose cancelled units are charged to the seller (cancel initiator 'seller':"
    " no stock, cannot ship); buyer-requested and marketplace cancels are not."
)

# (channel, code, formula, comparison, threshold, seller line, marketplace metric, notes)
RULES = [
    ("amazon", "order_defect_rate", "order_defect_report", "lt", D("0.0100"), D("0.0050"), "orderDefectRate.mfn",
     "Defects (A-to-z claims, chargebacks, negative feedback) are known only to Amazon: the numerator is the "
     "latest Account Health report's MFN orderWithDefects count (a report at most 6 days old on the day), the "
     "denominator our MFN orders placed in the window. No report, no data." + UTC_DAYS + MFN_ONLY),
    ("amazon", "late_shipment_rate", "late_confirmation", "lt", D("0.0400"), D("0.0250"), "",
     "MFN orders whose ship-by (shipByWindow.latestDateTime) falls in the window and whose first ship "
     "confirmation was accepted; late when accepted after the ship-by (one second after is late, exactly at "
     "it is not). Orders not yet confirmed count once confirmed; the at-risk projection shows them before."
     + ACCEPTED + UTC_DAYS + MFN_ONLY),
    ("amazon", "late_shipment_rate_30d", "late_confirmation", "lt", D("0.0400"), D("0.0250"), "lateShipmentRate",
     "As the 10-day rate over 30 days." + ACCEPTED + UTC_DAYS + MFN_ONLY),
    ("amazon", "pre_fulfillment_cancel_rate", "seller_cancel", "lt", D("0.0250"), None,
     "preFulfillmentCancellationRate",
     "MFN orders placed in the window; the numerator those the seller cancelled." + SELLER_CANCEL + UTC_DAYS
     + MFN_ONLY),
    ("amazon", "valid_tracking_rate", "valid_tracking", "gt", D("0.9500"), None, "validTrackingRate",
     "MFN orders ship-confirmed (accepted) in the window; valid when a carrier scan exists." + SCAN + ACCEPTED
     + UTC_DAYS + MFN_ONLY),
    ("amazon", "on_time_delivery", "on_time_delivery", "gt", D("0.9700"), None, "onTimeDeliveryRate",
     "MFN orders shipped with a tracking number whose promise (deliverByWindow end, else the shipment's "
     "promised delivery) falls in the window and has passed or is delivered; on time when every shipment was "
     "delivered at or before it. A target, no penalty." + UTC_DAYS + MFN_ONLY),
    ("walmart", "cancellation_rate", "seller_cancel", "lte", D("0.0200"), D("0.0150"), "",
     "Orders placed in the window; the numerator those the seller cancelled (SELLER_CANCEL_* reasons)."
     + SELLER_CANCEL + UTC_DAYS + MFN_ONLY),
    ("walmart", "on_time_delivery", "on_time_delivery_orders", "gte", D("0.9000"), D("0.9500"), "",
     "Ship-confirmed orders whose estimated delivery date (shippingInfo.estimatedDeliveryDate) falls in the "
     "window and has passed or is delivered; on time when delivered at or before it. Some Walmart documents "
     "say 95%: that is the seller line here." + UTC_DAYS + MFN_ONLY),
    ("walmart", "valid_tracking_rate", "valid_tracking", "gte", D("0.9900"), None, "",
     "Ship-confirmed orders with a carrier scan ÷ ship-confirmed orders, by confirmation day." + SCAN + ACCEPTED
     + UTC_DAYS + MFN_ONLY),
    ("walmart", "refund_rate", "seller_refund", "lte", D("0.0600"), None, "",
     "Orders placed in the window with a seller-responsible return (damaged, defective, wrong item, not as "
     "described; not rejected or cancelled) or a refund not tied to a return (not failed). Window 30 days, "
     "the short end of Walmart's 30–60." + UTC_DAYS + MFN_ONLY),
    ("ebay", "transaction_defect_rate", "seller_cancel", "lte", D("0.0200"), D("0.0050"), "",
     "Transactions (orders) placed in the window; defects are seller cancels for stock. Cases closed without "
     "seller resolution live only at eBay and are not counted. 90 days (eBay's 3-month period); the seller "
     "line is Top Rated's 0.5%." + SELLER_CANCEL + UTC_DAYS),
    ("ebay", "late_shipment_rate", "late_scan", "lte", D("0.0300"), None, "",
     "Ship-confirmed transactions by ship-by day (eBay's shipByDate, per line: the earliest); late when the "
     "first carrier scan is after the ship-by, or, never scanned, when the confirmation was accepted after it."
     + SCAN + ACCEPTED + UTC_DAYS),
    ("ebay", "tracking_uploaded", "tracking_uploaded", "gte", D("0.9500"), None, "",
     "Ship-confirmed transactions by ship-by day; counted when a confirmation with a tracking number was "
     "accepted at or before the ship-by." + ACCEPTED + UTC_DAYS),
    ("tiktok", "late_dispatch_rate", "late_dispatch", "lte", D("0.0400"), None, "",
     "Orders not wholly cancelled whose dispatch SLA (rts_sla_time) falls in the window and has passed or "
     "that were scanned; late when the first carrier scan is after it, or when it passed with no scan. TikTok "
     "enforces above 10%; 4% is the standard." + SCAN + UTC_DAYS + MFN_ONLY),
    ("tiktok", "seller_fault_cancellation_rate", "seller_cancel", "lte", D("0.0250"), None, "",
     "Orders placed in the window; the numerator the seller-fault cancels." + SELLER_CANCEL + UTC_DAYS + MFN_ONLY),
    ("tiktok", "valid_tracking_rate", "valid_tracking", "gte", D("0.9500"), None, "",
     "Ship-confirmed orders with a carrier scan ÷ ship-confirmed orders, by confirmation day." + SCAN + ACCEPTED
     + UTC_DAYS + MFN_ONLY),
    ("shopify", "ship_on_time_rate", "on_time_confirmation", "gte", D("0.9500"), None, "",
     "Shopify sends no ship-by: the OMS computes it (handling time + cutoff). Orders confirmed, by ship-by day; "
     "on time when the fulfilment was accepted at or before it." + ACCEPTED + UTC_DAYS),
    ("shopify", "cancel_rate", "seller_cancel", "lte", D("0.0250"), None, "",
     "Orders placed in the window; the numerator those the seller cancelled." + SELLER_CANCEL + UTC_DAYS),
    ("shopify", "refund_rate", "refund", "lte", D("0.0500"), None, "",
     "Orders placed in the window with any refund that did not fail." + UTC_DAYS),
]

def forward(apps, schema_editor):
    MetricDefinition = apps.get_model("scorecards", "MetricDefinition")
    for channel, code, formula, comparison, threshold, seller, marketplace_metric, notes in RULES:
        row = MetricDefinition.objects.filter(channel_kind=channel, code=code, version=1).first()
        if row is None:
            continue
        row.formula = formula
        row.marketplace_metric = marketplace_metric
        row.notes = notes
        if row.threshold == threshold and row.comparison in ("lte", "gte") and row.comparison[:2] == comparison[:2]:
            row.comparison = comparison
            row.warning_threshold = _warning(threshold, comparison)
            row.seller_threshold = seller
        row.save()


class Migration(migrations.Migration):
    dependencies = [("scorecards", "0003_definitions_formula_snapshot_day")]
    operations = [migrations.RunPython(forward, migrations.RunPython.noop)]
