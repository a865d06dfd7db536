"""Common parcel carriers with tracking URL templates and each channel's code for them."""

from django.db import migrations

CARRIERS = [
    ("UPS", "UPS", "https://www.ups.com/track?tracknum={tracking_number}",
     {"amazon": "UPS", "walmart": "UPS", "ebay": "UPS", "shopify": "UPS"}),
    ("USPS", "USPS", "https://tools.usps.com/go/TrackConfirmAction?tLabels={tracking_number}",
     {"amazon": "USPS", "walmart": "USPS", "ebay": "USPS", "shopify": "USPS"}),
    ("FEDEX", "FedEx", "https://www.fedex.com/fedextrack/?trknbr={tracking_number}",
     {"amazon": "FedEx", "walmart": "FedEx", "ebay": "FEDEX", "shopify": "FedEx"}),
    ("DHL", "DHL eCommerce", "https://www.dhl.com/us-en/home/tracking.html?tracking-id={tracking_number}",
     {"amazon": "DHL", "walmart": "DHL", "ebay": "DHL", "shopify": "DHL eCommerce"}),
    ("ONTRAC", "OnTrac", "https://www.ontrac.com/tracking/?number={tracking_number}",
     {"amazon": "OnTrac", "walmart": "OnTrac", "ebay": "ONTRAC", "shopify": "OnTrac"}),
]


def load(apps, schema_editor):
    Carrier = apps.get_model("fulfillment", "Carrier")
    for code, name, template, channel_codes in CARRIERS:
        Carrier.objects.get_or_create(
            code=code, defaults={"name": name, "tracking_url_template": template, "channel_codes": channel_codes}
        )


def unload(apps, schema_editor):
    apps.get_model("fulfillment", "Carrier").objects.filter(code__in=[c[0] for c in CARRIERS]).delete()


class Migration(migrations.Migration):
    dependencies = [("fulfillment", "0002_initial")]
    operations = [migrations.RunPython(load, unload)]
