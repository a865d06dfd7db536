"""The orders API's write endpoints (fulfillment/api_overrides.py), mounted beside the orders read API."""

from rest_framework.routers import SimpleRouter

from fulfillment.api_overrides import ExceptionCaseViewSet, OrderOverrideViewSet

router = SimpleRouter()
router.register("orders", OrderOverrideViewSet, basename="order-override")
router.register("exception-cases", ExceptionCaseViewSet, basename="exception-case")

urlpatterns = router.urls
