from django.urls import path

from returns import views

app_name = "returns"

urlpatterns = [
    path("", views.QueueView.as_view(), name="queue"),
    path("export.csv", views.QueueExportView.as_view(), name="export"),
    path("scan/", views.ScanRmaView.as_view(), name="scan"),
    path("report/", views.ReportView.as_view(), name="report"),
    path("new/<int:order_id>/", views.CreateView.as_view(), name="create"),
    path("<int:pk>/", views.DetailView.as_view(), name="detail"),
    path("<int:pk>/receive/", views.ReceiveView.as_view(), name="receive"),
    path("<int:pk>/refund/", views.RefundView.as_view(), name="refund"),
    path("<int:pk>/exchange/", views.ExchangeView.as_view(), name="exchange"),
    path("<int:pk>/refunds/<int:refund_id>/record/", views.RefundRecordView.as_view(), name="refund-record"),
    path("<int:pk>/<str:action>/", views.ActionView.as_view(), name="action"),
]
