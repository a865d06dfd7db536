from django.urls import path

from channels import views

app_name = "channels"

urlpatterns = [
    path("", views.AccountListView.as_view(), name="accounts"),
    path("<int:pk>/", views.AccountDetailView.as_view(), name="account"),
    path("<int:pk>/sync/", views.SyncNowView.as_view(), name="sync-now"),
    path("runs/", views.SyncRunListView.as_view(), name="runs"),
    path("runs/export.csv", views.SyncRunExportView.as_view(), name="runs-export"),
    path("inbound/export.csv", views.InboundEventExportView.as_view(), name="inbound-export"),
    path("outbox/export.csv", views.OutboxExportView.as_view(), name="outbox-export"),
    path("inbound/", views.InboundEventListView.as_view(), name="inbound"),
    path("inbound/<int:pk>/reprocess/", views.InboundReprocessView.as_view(), name="inbound-reprocess"),
    path("inbound/<int:pk>/discard/", views.InboundDiscardView.as_view(), name="inbound-discard"),
    path("outbox/", views.OutboxListView.as_view(), name="outbox"),
    path("outbox/<int:pk>/", views.OutboxDetailView.as_view(), name="outbox-detail"),
    path("outbox/<int:pk>/retry/", views.OutboxRetryView.as_view(), name="outbox-retry"),
    # Reconciliation.
    path("reconciliation/", views.ReconcileOverviewView.as_view(), name="reconciliation"),
    path("<int:pk>/reconciliation/", views.AccountReconcileView.as_view(), name="account-reconciliation"),
    path("<int:pk>/reconcile/", views.ReconcileNowView.as_view(), name="reconcile-now"),
    # Ops console (exceptions at scale)
    path("cases/<int:pk>/map-sku/", views.MapSkuView.as_view(), name="map-sku"),
    path("skus/search/", views.SkuSearchView.as_view(), name="sku-search"),
    path("dashboard/lag/", views.DashboardLagView.as_view(), name="dashboard-lag"),
    path("cases/retry/", views.CaseRetryBulkView.as_view(), name="cases-retry"),
    path("outbox/<int:pk>/discard/", views.OutboxDiscardView.as_view(), name="outbox-discard"),
]
