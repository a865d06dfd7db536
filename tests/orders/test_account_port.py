"""Orders holds its channel account by id (DESIGN.md: orders never names channels): no foreign key, no
migration dependency that way; the account is read through config.kernel.accounts, the database keeps the
reference (channels' migration 0013), and deleting an account with orders is still refused."""

from __future__ import annotations

import pytest
from django.apps import apps
from django.db import IntegrityError, connection, transaction
from django.db.migrations.loader import MigrationLoader
from django.db.models import ProtectedError
from django.test.utils import CaptureQueriesContext
from django.urls import reverse

from channels.models import ChannelAccount
from config.kernel import accounts
from orders.models import ExceptionCase, ExceptionKind, Order
from tests.factories import ChannelAccountFactory, OrderFactory, OrderLineFactory


@pytest.mark.parametrize("label", ["orders", "fulfillment"])
def test_no_migration_of_orders_or_fulfillment_depends_on_channels(label):
    # fulfillment: channels listens to its signals and calls its services, so a relation back would close a circle
    graph = MigrationLoader(None, ignore_no_migrations=True).graph
    orders_nodes = [node for node in graph.nodes if node[0] == label]
    assert orders_nodes
    found = {
        (node, ancestor) for node in orders_nodes for ancestor in graph.forwards_plan(node) if ancestor[0] == "channels"
    }
    assert found == set()


@pytest.mark.parametrize("label", ["orders", "inventory", "fulfillment"])
def test_no_model_of_orders_inventory_or_fulfillment_relates_to_a_channels_model(label):
    found = [
        f"{model.__name__}.{field.name} -> {field.related_model.__name__}"
        for model in apps.get_app_config(label).get_models()
        for field in [*model._meta.fields, *model._meta.many_to_many]
        if field.is_relation and field.related_model is not None and field.related_model._meta.app_label == "channels"
    ]
    assert found == []


@pytest.mark.django_db
def test_the_account_is_set_and_read_through_the_port():
    # given an account
    account = ChannelAccountFactory(kind="walmart", name="walmart-main")
    # when an order is made with it (the constructor, create and the factory all take account=)
    built = Order(account=account)
    made = OrderFactory(account=account)
    # then the id is set and the account reads back
    assert built.account_id == account.pk and built.account is account
    fresh = Order.objects.get(pk=made.pk)
    assert fresh.account_id == account.pk
    assert (fresh.account.pk, fresh.account.kind, fresh.account.name) == (account.pk, "walmart", "walmart-main")
    assert isinstance(fresh.account, accounts.SalesAccount)
    # and a case without an account has none
    case = ExceptionCase.objects.create(kind=ExceptionKind.NO_NODE, title="t", dedupe_key="t:1", opened_by="t")
    assert case.account is None and ExceptionCase.objects.get(pk=case.pk).account is None


@pytest.mark.django_db
def test_an_account_written_in_this_process_is_never_read_stale():
    account = ChannelAccountFactory(name="before")
    assert accounts.account(account.pk).name == "before"
    ChannelAccount.objects.filter(pk=account.pk).update(name="after-update")
    assert accounts.account(account.pk).name == "after-update"
    account.name = "after-save"
    account.save()
    assert accounts.accounts([account.pk])[account.pk].name == "after-save"


@pytest.mark.django_db
def test_deleting_an_account_with_orders_is_refused_and_leaves_both():
    # given an account with an order
    order = OrderFactory()
    account = order.account
    # when it is deleted, as an instance or through a queryset
    with pytest.raises(ProtectedError, match="order"):
        account.delete()
    with pytest.raises(ProtectedError):
        ChannelAccount.objects.filter(pk=account.pk).delete()
    # then both are still there
    assert ChannelAccount.objects.filter(pk=account.pk).exists()
    assert Order.objects.filter(pk=order.pk, account_id=account.pk).exists()


@pytest.mark.django_db
def test_the_database_refuses_to_delete_an_account_with_orders():
    order = OrderFactory()
    with pytest.raises(IntegrityError), transaction.atomic(), connection.cursor() as cursor:
        cursor.execute("DELETE FROM channels_channelaccount WHERE id = %s", [order.account_id])
    assert Order.objects.filter(pk=order.pk).exists()


@pytest.mark.django_db
def test_deleting_an_account_without_orders_deletes_its_exception_cases():
    # given an account with a case and no order, and a case of another account
    account, other = ChannelAccountFactory(), ChannelAccountFactory()
    case = ExceptionCase.objects.create(
        kind=ExceptionKind.SYNC_FAILURE, title="t", dedupe_key="s:1", opened_by="t", account=account
    )
    kept = ExceptionCase.objects.create(
        kind=ExceptionKind.SYNC_FAILURE, title="t", dedupe_key="s:2", opened_by="t", account=other
    )
    # when the account is deleted
    account.delete()
    # then its case went with it, the other stays
    assert not ExceptionCase.objects.filter(pk=case.pk).exists()
    assert ExceptionCase.objects.filter(pk=kept.pk).exists()


def _checked_now(write) -> None:
    """Run ``write`` in a savepoint and check the deferred constraints at once (as a commit would)."""
    with transaction.atomic():
        write()
        with connection.cursor() as cursor:
            cursor.execute("SET CONSTRAINTS ALL IMMEDIATE")


@pytest.mark.django_db
def test_the_database_refuses_an_order_or_a_case_of_an_unknown_account():
    order = OrderFactory()
    unknown = order.account_id + 1_000_000
    case = ExceptionCase(kind=ExceptionKind.NO_NODE, title="t", dedupe_key="u:1", opened_by="t", account_id=unknown)
    with pytest.raises(IntegrityError):
        _checked_now(lambda: Order.objects.filter(pk=order.pk).update(account_id=unknown))
    with pytest.raises(IntegrityError):
        _checked_now(case.save)
    assert Order.objects.get(pk=order.pk).account_id == order.account_id


@pytest.mark.django_db
def test_the_admin_refuses_to_delete_an_account_with_orders(client, admin_user):
    order = OrderFactory()
    account = order.account
    client.force_login(admin_user)
    url = reverse("admin:channels_channelaccount_delete", args=[account.pk])
    page = client.get(url)
    assert page.status_code == 200
    text = page.content.decode()
    assert "protected related objects" in text and str(order) in text
    client.post(url, {"post": "yes"})
    assert ChannelAccount.objects.filter(pk=account.pk).exists()
    assert Order.objects.filter(pk=order.pk).exists()


def _orders(n_accounts: int) -> None:
    for i in range(n_accounts):
        account = ChannelAccountFactory(kind=["amazon", "walmart", "shopify", "ebay", "tiktok"][i % 5])
        for _ in range(2):
            OrderLineFactory(order=OrderFactory(account=account, status="open"))


@pytest.mark.django_db
@pytest.mark.parametrize("url", [reverse("orders:list"), "/api/v1/orders/"])
def test_the_order_lists_take_the_same_queries_whatever_the_number_of_accounts(client, agent, url):
    # given orders of one account
    _orders(1)
    client.force_login(agent)
    with CaptureQueriesContext(connection) as few:
        assert client.get(url).status_code == 200
    # when there are orders of seven more accounts
    _orders(7)
    with CaptureQueriesContext(connection) as many:
        response = client.get(url)
    # then the page takes as many queries, and shows every account
    assert response.status_code == 200
    assert len(many.captured_queries) == len(few.captured_queries), [q["sql"][:120] for q in many.captured_queries]
    for account in ChannelAccount.objects.all():
        assert account.name in response.content.decode()


@pytest.mark.django_db(transaction=True)
def test_a_channel_node_policy_holds_its_account_by_id_and_goes_with_it():
    from django.core.exceptions import ValidationError

    from fulfillment.models import ChannelNodePolicy, RoutingConfig
    from tests.factories import LocationFactory

    # given a policy keeping one account off a node
    account = ChannelAccountFactory(kind="amazon")
    config = RoutingConfig.objects.create(name="policies", is_active=False)
    policy = ChannelNodePolicy.objects.create(config=config, account=account, location=LocationFactory())
    # then it reads its account back through the port, and one naming no account is refused with a clear message
    assert ChannelNodePolicy.objects.get(pk=policy.pk).account.pk == account.pk
    with pytest.raises(ValidationError, match="no channel account has id 987654"):
        ChannelNodePolicy(config=config, account_id=987654, location=policy.location).full_clean()
    # and the database refuses one for an unknown account
    with pytest.raises(IntegrityError), transaction.atomic():
        ChannelNodePolicy.objects.create(config=config, account_id=987654, location=policy.location)
    # when the account is deleted, its policy goes with it
    account.delete()
    assert not ChannelNodePolicy.objects.filter(pk=policy.pk).exists()
