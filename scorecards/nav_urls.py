"""The console navigation names the Scorecards section ``console-section-scorecards`` (no namespace)."""

from django.urls import path

from scorecards import views

urlpatterns = [path("", views.ScorecardIndexView.as_view(), name="console-section-scorecards")]
