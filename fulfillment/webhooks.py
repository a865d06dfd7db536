"""POST /webhooks/tracking/: a carrier or TMS pushes tracking events.

The raw body is verified with HMAC-SHA256 under the shared secret TRACKING_WEBHOOK_SECRET (header
``X-Waybill-Signature: sha256=<hex>``, compared in constant time) before anything is parsed; a bad
or missing signature answers 401 and stores nothing. The body is one update
``{"tracking_number", "carrier", "events": [...]}`` or a list of them, applied all or nothing;
events already stored (same id per shipment) are skipped, so a replayed delivery changes nothing.
"""

from __future__ import annotations

import hashlib
import hmac
import json
import logging

from django.conf import settings
from django.contrib.auth.decorators import login_not_required
from django.db import transaction
from django.http import JsonResponse
from django.views.decorators.csrf import csrf_exempt
from django.views.decorators.http import require_POST

from config.kernel.errors import DomainError
from fulfillment import services
from fulfillment.api_views import tracking_inputs
from fulfillment.serializers import TrackingFeedSerializer

log = logging.getLogger(__name__)
SIGNATURE_HEADER = "X-Waybill-Signature"
MAX_UPDATES = 200


def tracking_webhook_secret() -> str:
    return settings.TRACKING_WEBHOOK_SECRET


def signature_for(body: bytes, secret: str) -> str:
    return "sha256=" + hmac.new(secret.encode(), body, hashlib.sha256).hexdigest()


def _verified(request) -> bool:
    secret = tracking_webhook_secret()
    given = request.headers.get(SIGNATURE_HEADER, "")
    if not secret or not given:
        return False
    if not given.startswith("sha256="):
        given = "sha256=" + given
    return hmac.compare_digest(signature_for(request.body, secret).encode(), given.strip().encode())


@csrf_exempt
@login_not_required
@require_POST
def tracking_webhook(request):
    if not _verified(request):
        if not tracking_webhook_secret():
            log.error("tracking webhook refused: TRACKING_WEBHOOK_SECRET is not set")
        return JsonResponse({"detail": "bad or missing signature", "code": "bad_signature"}, status=401)
    try:
        payload = json.loads(request.body)
    except (ValueError, UnicodeDecodeError):
        return JsonResponse({"detail": "the body is not JSON", "field": "body"}, status=400)
    updates = payload if isinstance(payload, list) else [payload]
    if not updates or len(updates) > MAX_UPDATES:
        return JsonResponse({"detail": f"between 1 and {MAX_UPDATES} updates", "field": "body"}, status=400)
    parsed = []
    for index, update in enumerate(updates):
        serializer = TrackingFeedSerializer(data=update if isinstance(update, dict) else {})
        if not serializer.is_valid():
            prefix = f"[{index}]." if isinstance(payload, list) else ""
            errors = {f"{prefix}{field}": problems for field, problems in serializer.errors.items()}
            return JsonResponse({"detail": "invalid tracking update", "errors": errors}, status=400)
        parsed.append(serializer.validated_data)
    results = []
    try:
        with transaction.atomic():
            for data in parsed:
                shipment = services.shipment_for_tracking(
                    tracking_number=data["tracking_number"], carrier_code=data["carrier"]
                )
                result = services.tracking_events_record(
                    shipment=shipment.pk,
                    events=tracking_inputs(data["events"]),
                    source=data["source"] if data["source"] != "tms" else "webhook",
                    carrier_code=data["carrier"],
                    actor="tracking-webhook",
                )
                results.append({"shipment": shipment.pk, "created": result.created, "duplicates": result.duplicates})
    except DomainError as exc:
        body = {"detail": str(exc), "code": exc.code, "field": getattr(exc, "field", None)}
        return JsonResponse(body, status=exc.http_status)
    return JsonResponse({"results": results})
