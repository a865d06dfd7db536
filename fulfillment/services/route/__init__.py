"""Route and reserve: for each order, plan nodes (fulfillment.routing), reserve the stock (inventory's
stock_reserve, all or nothing), take node capacity, and write the RoutingDecision, the Shipments and
their lines and the order's transitions, all in one transaction per order.

dispatch  orders_route / order_route: the batch path first, then each order left over alone
batch     the normal path: open orders decided together, five statements for a batch routed whole, two
          more when some orders backorder or open exception cases
general   the general path, one order per transaction (order_route_in_transaction): what the batch
          can't decide on its read (held, routed before, a routing case open, preorders), re-routes, races
release   backorders filled on receipt (backorders_fill) and released: reserved later, then shipped
reroute   order_reroute: a person cancels the unshipped shipments and routes again
common    the result, the advisory lock, a plan's demands and outcome, Shipments from a plan

Lock order (the same as inventory's): a per-order advisory lock (two routers never plan one order
at once; the normal path only tries it, after the stock rows, so it never waits on it), then stock
rows (inside stock_reserve), then node capacity rows, then the order row (order_transition).
"""

from fulfillment.services.route.common import RouteResult
from fulfillment.services.route.dispatch import order_route, orders_route
from fulfillment.services.route.general import order_route_in_transaction
from fulfillment.services.route.release import backorders_fill
from fulfillment.services.route.reroute import order_reroute

__all__ = [
    "RouteResult",
    "backorders_fill",
    "order_reroute",
    "order_route",
    "order_route_in_transaction",
    "orders_route",
]
