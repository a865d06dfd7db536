from django.urls import path

from fulfillment import views

app_name = "fulfillment"

urlpatterns = [
    path("", views.BoardView.as_view(), name="board"),
    path("shipments/<int:pk>/", views.ShipmentDetailView.as_view(), name="shipment"),
    path("orders/<int:pk>/reroute/", views.RerouteView.as_view(), name="reroute"),
    path("simulator/", views.SimulatorView.as_view(), name="simulator"),
]
