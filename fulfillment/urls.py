from django.urls import path

from fulfillment import views

app_name = "fulfillment"

urlpatterns = [
    path("", views.BoardView.as_view(), name="board"),
    path("shipments/<int:pk>/", views.ShipmentDetailView.as_view(), name="shipment"),
    path("orders/<int:pk>/reroute/", views.RerouteView.as_view(), name="reroute"),
    path("simulator/", views.SimulatorView.as_view(), name="simulator"),
    path("shipments/", views.ShipmentListView.as_view(), name="shipments"),
    path("shipments/bulk/", views.ShipmentBulkView.as_view(), name="shipments-bulk"),
    path("shipments/export.csv", views.ShipmentExportView.as_view(), name="shipments-export"),
    path("shipments/<int:pk>/resend-confirmation/", views.ResendConfirmationView.as_view(), name="resend-confirmation"),
    path("shipments/<int:pk>/split/", views.ShipmentSplitView.as_view(), name="shipment-split"),
    path("orders/<int:pk>/merge-shipments/", views.ShipmentsMergeView.as_view(), name="shipments-merge"),
    path("orders/<int:pk>/cancel/", views.OrderCancelView.as_view(), name="order-cancel"),
    path("orders/<int:pk>/backorder/", views.OrderBackorderView.as_view(), name="order-backorder"),
    path("orders/bulk-reroute/", views.BulkRerouteView.as_view(), name="bulk-reroute"),
    path("cases/fix/", views.CaseFixBulkView.as_view(), name="cases-fix"),
    path("dashboard/carriers/", views.CarrierDashboardView.as_view(), name="dashboard-carriers"),
]
