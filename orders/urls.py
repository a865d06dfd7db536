from django.urls import path

from orders import views

app_name = "orders"

urlpatterns = [
    path("", views.OrderListView.as_view(), name="list"),
    path("export.csv", views.OrderExportView.as_view(), name="export"),
    path("bulk/", views.OrderBulkView.as_view(), name="bulk"),
    path("<int:pk>/ship-to/", views.ShipToEditView.as_view(), name="ship-to"),
    path("<int:pk>/service-level/", views.ServiceLevelView.as_view(), name="service-level"),
    path("exceptions/export.csv", views.ExceptionExportView.as_view(), name="exceptions-export"),
    path("exceptions/bulk/", views.ExceptionBulkView.as_view(), name="exceptions-bulk"),
    path("<int:pk>/", views.OrderDetailView.as_view(), name="detail"),
    path("<int:pk>/holds/", views.HoldPlaceView.as_view(), name="hold-place"),
    path("holds/<int:pk>/release/", views.HoldReleaseView.as_view(), name="hold-release"),
    path("exceptions/", views.ExceptionListView.as_view(), name="exceptions"),
    path("exceptions/groups/", views.ExceptionGroupsView.as_view(), name="exception-groups"),
    path(
        "exceptions/<int:pk>/<slug:action>/",
        views.ExceptionActionView.as_view(),
        name="exception-action",
    ),
]
