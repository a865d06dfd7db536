from django.urls import path

from inventory import views

app_name = "inventory"

urlpatterns = [
    path("", views.StockGridView.as_view(), name="grid"),
    path("export.csv", views.StockExportView.as_view(), name="export"),
    path("skus/<str:code>/", views.SkuDetailView.as_view(), name="sku"),
    path("skus/<str:code>/adjust/", views.AdjustmentView.as_view(), name="adjust"),
    path("inbound/", views.InboundListView.as_view(), name="inbound"),
    path("inbound/export.csv", views.InboundExportView.as_view(), name="inbound-export"),
    path("inbound/<int:pk>/", views.InboundDetailView.as_view(), name="inbound-detail"),
    path("inbound/<int:pk>/receive/", views.InboundReceiveView.as_view(), name="inbound-receive"),
    # Reconciliation of nodes: count proposals.
    path("nodes/<str:code>/counts/", views.NodeCountsView.as_view(), name="node-counts"),
    path(
        "nodes/<str:code>/counts/<int:pk>/<str:decision>/",
        views.NodeCountDecideView.as_view(),
        name="node-count-decide",
    ),
]
