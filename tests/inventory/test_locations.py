"""Locations: what the database itself refuses."""

from __future__ import annotations

import pytest
from django.db import IntegrityError, transaction

from tests.factories import LocationFactory


@pytest.mark.django_db
def test_the_database_refuses_a_ship_day_that_is_not_a_weekday():
    location = LocationFactory(ship_days=[0, 1, 2, 3, 4])
    with pytest.raises(IntegrityError, match="location_ship_days_are_weekdays"), transaction.atomic():
        type(location).objects.filter(pk=location.pk).update(ship_days=[0, 7])
    location.refresh_from_db()
    assert location.ship_days == [0, 1, 2, 3, 4]


@pytest.mark.django_db
def test_the_location_form_names_a_ship_day_that_is_not_a_weekday(admin_client):
    # given a location edited in admin with ship days "0,1,7" and a closure that is not a date
    location = LocationFactory(ship_days=[0, 1, 2, 3, 4])
    url = f"/admin/inventory/location/{location.pk}/change/"
    form = admin_client.get(url).context["adminform"].form
    data = {name: form[name].value() for name in form.fields}
    data = {k: ("" if v is None else v) for k, v in data.items()}
    data.update(ship_days="0,1,7", closed_on="2026-12-25,not-a-date")
    data = {k: (",".join(map(str, v)) if isinstance(v, list) else v) for k, v in data.items()}
    # when saved
    response = admin_client.post(url, data)
    # then the form answers with both errors and nothing changed
    assert response.status_code == 200
    errors = response.context["adminform"].form.errors
    assert "ship_days" in errors and "closed_on" in errors
    location.refresh_from_db()
    assert location.ship_days == [0, 1, 2, 3, 4] and location.closed_on == []
