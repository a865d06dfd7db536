from django.urls import path
from rest_framework.routers import DefaultRouter

from inventory.api_views import InboundShipmentViewSet, StockAdjustmentView, StockLevelViewSet, StockMovementViewSet

router = DefaultRouter()
router.include_root_view = False
router.register("stock-levels", StockLevelViewSet, basename="stock-level")
router.register("stock-movements", StockMovementViewSet, basename="stock-movement")
router.register("inbound-shipments", InboundShipmentViewSet, basename="inbound-shipment")

urlpatterns = [
    path("stock-adjustments/", StockAdjustmentView.as_view(), name="stock-adjustment"),
    *router.urls,
]
