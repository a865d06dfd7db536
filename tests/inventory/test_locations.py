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
