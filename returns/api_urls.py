from rest_framework.routers import SimpleRouter

from returns.api_views import RmaViewSet

router = SimpleRouter()
router.register("rmas", RmaViewSet, basename="rma")

urlpatterns = router.urls
