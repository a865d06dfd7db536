"""The project's URLs plus the floor of the million-order benchmark: a plain Django list view over the
same rows (the newest 50 orders, or the same filters' 50), behind the same middleware (session login)."""

from django.http import HttpResponse
from django.template import engines
from django.urls import path

from config.urls import urlpatterns as project_urlpatterns
from orders.models import Order

BARE_TEMPLATE = engines["django"].from_string(
    "<table>{% for o in orders %}<tr><td>{{ o.id }}</td><td>{{ o.external_id }}</td><td>{{ o.status }}</td>"
    "<td>{{ o.customer_name }}</td><td>{{ o.placed_at }}</td><td>{{ o.ship_by }}</td><td>{{ o.total_amount }}</td>"
    "</tr>{% endfor %}</table>"
)


def bare_order_list(request):
    orders = Order.objects.order_by("-placed_at", "-id")
    if request.GET.get("status"):
        orders = orders.filter(status=request.GET["status"])
    return HttpResponse(BARE_TEMPLATE.render({"orders": orders[:50]}))


urlpatterns = [path("bench/bare-orders/", bare_order_list), *project_urlpatterns]
