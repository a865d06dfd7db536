from django.urls import path

from scorecards import views

app_name = "scorecards"

urlpatterns = [
    path("", views.ScorecardIndexView.as_view(), name="index"),
    path("backfill/", views.BackfillView.as_view(), name="backfill"),
    path("tiles/", views.TilesView.as_view(), name="tiles"),
    path("<int:account_id>/", views.AccountScorecardView.as_view(), name="account"),
    path("<int:account_id>/account-health/", views.AccountHealthFetchView.as_view(), name="account-health"),
    path("<int:account_id>/<slug:code>/orders/", views.MetricOrdersView.as_view(), name="metric-orders"),
]
