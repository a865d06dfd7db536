from django.urls import path
from rest_framework.routers import SimpleRouter

from fulfillment.api_views import ShipmentViewSet, TrackingFeedView

router = SimpleRouter()
router.register("shipments", ShipmentViewSet, basename="node-shipment")

urlpatterns = [*router.urls, path("tracking/", TrackingFeedView.as_view(), name="tracking-feed")]
