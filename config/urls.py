from django.contrib import admin
from django.contrib.auth import views as auth_views
from django.contrib.auth.decorators import login_not_required
from django.urls import include, path
from drf_spectacular.views import SpectacularAPIView, SpectacularSwaggerView

from channels.webhooks import webhook_receive
from fulfillment.webhooks import tracking_webhook
from orders.views import DashboardView

admin.site.site_header = "Waybill administration"
admin.site.site_title = "Waybill admin"

urlpatterns = [
    path("", DashboardView.as_view(), name="dashboard"),
    path("login/", login_not_required(auth_views.LoginView.as_view()), name="login"),
    path("logout/", auth_views.LogoutView.as_view(), name="logout"),
    path("orders/", include("orders.urls")),
    path("inventory/", include("inventory.urls")),
    path("fulfillment/", include("fulfillment.urls")),
    path("returns/", include("returns.urls")),
    path("channels/", include("channels.urls")),
    path("webhooks/tracking/", tracking_webhook, name="tracking-webhook"),
    path("webhooks/<str:channel>/<int:account_id>/", webhook_receive, name="channel-webhook"),
    # --- scorecards ---
    path("scorecards/", include("scorecards.urls")),
    path("scorecards/", include("scorecards.nav_urls")),  # the navigation's name for the section
    path("api/v1/scorecards/", include("scorecards.api")),
    path("admin/", admin.site.urls),
    path("api/v1/", include("orders.api_urls")),
    path("api/v1/", include("fulfillment.api_override_urls")),
    path("api/v1/fulfillment/", include("fulfillment.api_urls")),
    path("api/v1/", include("inventory.api_urls")),
    path("api/v1/returns/", include("returns.api_urls")),
    path("api/schema/", SpectacularAPIView.as_view(), name="api-schema"),
    path("api/docs/", SpectacularSwaggerView.as_view(url_name="api-schema"), name="api-docs"),
]
