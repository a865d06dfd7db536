from __future__ import annotations

import pytest
from django.contrib import admin
from django.urls import reverse


@pytest.mark.django_db
def test_every_admin_changelist_and_add_page_renders_for_a_superuser(client, django_user_model):
    # given
    root = django_user_model.objects.create_superuser(username="root", password="x-not-used-1")
    client.force_login(root)
    # when / then
    for model, model_admin in admin.site._registry.items():
        opts = model._meta
        changelist = reverse(f"admin:{opts.app_label}_{opts.model_name}_changelist")
        assert client.get(changelist).status_code == 200, changelist
        if model_admin.has_add_permission(type("R", (), {"user": root})()):
            add = reverse(f"admin:{opts.app_label}_{opts.model_name}_add")
            assert client.get(add).status_code == 200, add


@pytest.mark.django_db
def test_big_table_admins_never_count_the_whole_table(client, django_user_model, django_assert_max_num_queries):
    from orders.pagination import BigTableAdminMixin

    root = django_user_model.objects.create_superuser(username="root", password="x-not-used-1")
    client.force_login(root)
    for model, model_admin in admin.site._registry.items():
        if not isinstance(model_admin, BigTableAdminMixin):
            continue
        assert model_admin.show_full_result_count is False
        opts = model._meta
        with django_assert_max_num_queries(30) as captured:
            client.get(reverse(f"admin:{opts.app_label}_{opts.model_name}_changelist"))
        for query in captured.captured_queries:
            sql = query["sql"].upper()
            assert not (sql.startswith("SELECT COUNT(*)") and "WHERE" not in sql and "LIMIT" not in sql), (
                opts.label,
                sql,
            )
