from django.urls import path

from orders import views

app_name = "orders"

urlpatterns = [
    path("", views.OrderListView.as_view(), name="list"),
    path("<int:pk>/", views.OrderDetailView.as_view(), name="detail"),
    path("<int:pk>/holds/", views.HoldPlaceView.as_view(), name="hold-place"),
    path("holds/<int:pk>/release/", views.HoldReleaseView.as_view(), name="hold-release"),
    path("exceptions/", views.ExceptionListView.as_view(), name="exceptions"),
    path(
        "exceptions/<int:pk>/<slug:action>/",
        views.ExceptionActionView.as_view(),
        name="exception-action",
    ),
]
