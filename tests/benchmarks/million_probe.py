"""The million-order benchmark's probe, run in its own process against the seeded database
(``python -m tests.benchmarks.million_probe``, DJANGO_SETTINGS_MODULE and WAYBILL_DATABASE_NAME set by the
benchmark): makes the Ops agent and its session, picks the pages' URLs from the data, requests each page once
in process to count its queries, and EXPLAINs every query of each page. Prints one JSON document."""

from __future__ import annotations

import json
import os
import re
import sys
import time
from datetime import timedelta

import django

os.environ.setdefault("DJANGO_SETTINGS_MODULE", "tests.benchmarks.million_settings")
django.setup()

from django.conf import settings  # noqa: E402
from django.contrib.auth import get_user_model  # noqa: E402
from django.contrib.auth.models import Group  # noqa: E402
from django.db import connection  # noqa: E402
from django.test import Client  # noqa: E402
from django.test.utils import CaptureQueriesContext  # noqa: E402
from django.utils import timezone  # noqa: E402

from config.kernel import accounts  # noqa: E402
from orders.models import ExceptionCase, Order  # noqa: E402
from orders.roles import OPS_AGENT  # noqa: E402

BIG_TABLES = ("orders_order", "orders_orderline", "orders_exceptioncase", "orders_shiptoaddress")
USERNAME = "bench-ops-agent"


def _agent():
    user, created = get_user_model().objects.get_or_create(username=USERNAME, defaults={"is_active": True})
    if created:
        user.set_unusable_password()
        user.save()
    user.groups.add(Group.objects.get(name=OPS_AGENT))
    return user


def _pages(client: Client) -> dict[str, str]:
    now = timezone.now()
    sample = Order.objects.filter(account_id__in=accounts.account_ids(name__startswith="seed-million")).order_by("pk")
    middle = sample[sample.count() // 2]
    digits = re.sub(r"\D", "", middle.external_id)
    case_order = ExceptionCase.objects.filter(order__isnull=False).order_by("-pk").values_list("order_id", flat=True)[0]
    after = (now - timedelta(days=30)).strftime("%Y-%m-%dT%H:%M")
    before = (now + timedelta(days=7)).strftime("%Y-%m-%dT%H:%M")
    pages = {
        "bare list (floor)": "/bench/bare-orders/",
        "order list, first page": "/orders/",
        "filtered: status + channel + ship-by": (
            f"/orders/?status=open&status=allocated&channel=amazon&ship_by_after={after}&ship_by_before={before}"
        ),
        "search by order number (partial)": f"/orders/?q={digits[-7:-1]}",
        "search by customer name (partial)": "/orders/?q=okafo",
        "order detail": f"/orders/{case_order}/",
        "exception queue (open cases)": "/orders/exceptions/",
        "exception groups (the queue's lazy panel)": "/orders/exceptions/groups/",
        "REST order list": "/api/v1/orders/",
    }
    first = client.get(pages["order list, first page"]).content.decode()
    found = re.search(r'href="([^"]*cursor=[^"]*)"', first)
    if not found:
        raise SystemExit("the order list's first page has no next-page link")
    pages["order list, next page (cursor)"] = found.group(1).replace("&amp;", "&").removeprefix("http://testserver")
    return pages


def _plan_facts(plan: dict) -> tuple[set[str], set[str]]:
    indexes, seq = set(), set()

    def walk(node: dict) -> None:
        if "Index Name" in node:
            indexes.add(node["Index Name"])
        if node.get("Node Type") == "Seq Scan" and node.get("Relation Name") in BIG_TABLES:
            seq.add(node["Relation Name"])
        for child in node.get("Plans", []):
            walk(child)

    walk(plan["Plan"])
    return indexes, seq


def _explain(sql: str) -> dict:
    with connection.cursor() as c:
        c.execute("EXPLAIN (ANALYZE, FORMAT JSON) " + sql)
        plan = c.fetchone()[0]
        plan = plan[0] if isinstance(plan, list) else plan
        c.execute("EXPLAIN " + sql)
        text = "\n".join(row[0] for row in c.fetchall())
    indexes, seq = _plan_facts(plan)
    return {"ms": plan["Execution Time"], "indexes": sorted(indexes), "seq_scans": sorted(seq), "text": text}


def main() -> None:
    settings.ALLOWED_HOSTS.append("testserver")
    user = _agent()
    client = Client()
    client.force_login(user)
    pages = _pages(client)
    out = {"session": client.cookies[settings.SESSION_COOKIE_NAME].value, "pages": {}}
    for name, url in pages.items():
        client.get(url)  # warm caches (templates, the trigram check)
        with CaptureQueriesContext(connection) as queries:
            started = time.perf_counter()
            response = client.get(url)
            elapsed = (time.perf_counter() - started) * 1000
        if response.status_code != 200:
            raise SystemExit(f"{url} answered {response.status_code}")
        plans = [_explain(q["sql"]) | {"sql": q["sql"]} for q in queries.captured_queries]
        data = [p for p in plans if any(t in p["sql"] for t in BIG_TABLES)]
        heaviest = max(data or plans, key=lambda p: p["ms"])
        out["pages"][name] = {
            "url": url,
            "queries": len(queries.captured_queries),
            "in_process_ms": elapsed,
            "indexes": sorted({i for p in data for i in p["indexes"]}),
            "seq_scans": sorted({s for p in data for s in p["seq_scans"]}),
            "sql_ms": sum(p["ms"] for p in plans),
            "heaviest_explain": heaviest["text"],
        }
    json.dump(out, sys.stdout)


if __name__ == "__main__":
    main()
