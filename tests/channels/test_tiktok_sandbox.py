"""The TikTok sandbox refuses what TikTok refuses, in TikTok's envelope and with its codes: hand-made
signed requests over HTTP, one rule broken at a time."""

from __future__ import annotations

import json
import time

import httpx
import pytest

from channels.sandbox.tiktok import tiktok_sign

SHOP = {"app_key": "ak-test", "shop_cipher": "ROW_test"}


def _call(sandbox, method, path, *, query=None, body=None, token="TTP_test", sign=True, stamp=None, content_type=None):
    params = {**SHOP, "timestamp": str(int(time.time()) if stamp is None else stamp), **(query or {})}
    raw = body if isinstance(body, bytes) else (json.dumps(body).encode() if body is not None else b"")
    if sign:
        params["sign"] = tiktok_sign("as-test", path, params, raw if method != "GET" else b"")
    headers = {"x-tts-access-token": token, "Content-Type": content_type or "application/json"}
    return httpx.request(method, f"{sandbox.base_url}{path}", params=params, content=raw or None, headers=headers)


SEARCH = "/order/202309/orders/search"


@pytest.mark.parametrize(
    ("case", "kwargs", "status", "code"),
    [
        ("no sign", {"sign": False}, 401, 36009004),
        ("old timestamp", {"stamp": int(time.time()) - 600}, 401, 36009004),
        ("negative timestamp", {"stamp": -5}, 401, 36009004),
        ("unknown token", {"token": "TTP_forged"}, 401, 36009004),
        ("page_size 0", {"query": {"page_size": "0"}}, 400, 36009004),
        ("page_size 101", {"query": {"page_size": "101"}}, 400, 36009004),
        ("sort order", {"query": {"page_size": "10", "sort_order": "UP"}}, 400, 36009004),
        ("sort field", {"query": {"page_size": "10", "sort_field": "price"}}, 400, 36009004),
        ("misspelt filter", {"query": {"page_size": "10"}, "body": {"update_time_from": 1}}, 400, 36009004),
        ("status enum", {"query": {"page_size": "10"}, "body": {"order_status": "SHIPPED"}}, 400, 36009004),
        ("not JSON", {"query": {"page_size": "10"}, "body": b"{nope"}, 400, 36009022),
        ("form body", {"query": {"page_size": "10"}, "body": {}, "content_type": "text/plain"}, 400, 36009022),
    ],
)
def test_order_search_refusals(tiktok_sandbox, case, kwargs, status, code):
    # when
    reply = _call(tiktok_sandbox, "POST", SEARCH, **kwargs)
    # then: TikTok's envelope, data null, a request id
    body = reply.json()
    assert (reply.status_code, body["code"]) == (status, code), body
    assert body["data"] is None and body["request_id"] and body["message"]


def test_a_bad_sign_is_106001(tiktok_sandbox):
    reply = _call(tiktok_sandbox, "POST", SEARCH, query={"page_size": "10"}, body={}, sign=False)
    params = dict(reply.request.url.params) | {"sign": "0" * 64}
    reply = httpx.post(f"{tiktok_sandbox.base_url}{SEARCH}", params=params, headers={"x-tts-access-token": "TTP_test"})
    assert (reply.status_code, reply.json()["code"]) == (401, 106001)


def test_shop_calls_need_the_shops_cipher(tiktok_sandbox):
    # given
    SHOP.pop("shop_cipher")
    try:
        missing = _call(tiktok_sandbox, "POST", SEARCH, query={"page_size": "10"}, body={})
        wrong = _call(tiktok_sandbox, "POST", SEARCH, query={"page_size": "10", "shop_cipher": "ROW_other"}, body={})
    finally:
        SHOP["shop_cipher"] = "ROW_test"
    # then
    assert (missing.status_code, missing.json()["code"]) == (400, 106013)
    assert wrong.json()["code"] == 101000


def test_an_unserved_version_and_an_unknown_path(tiktok_sandbox):
    version = _call(tiktok_sandbox, "POST", "/order/202212/orders/search", query={"page_size": "10"}, body={})
    path = _call(tiktok_sandbox, "POST", "/order/202309/orders/find", query={"page_size": "10"}, body={})
    assert (version.status_code, version.json()["code"]) == (404, 36009014)
    assert (path.status_code, path.json()["code"]) == (404, 36009009)


def test_an_expired_token_is_105002(tiktok_sandbox):
    httpx.post(f"{tiktok_sandbox.base_url}/_sandbox/tiktok/tokens", json={"expire": True})
    reply = _call(tiktok_sandbox, "GET", "/order/202309/orders", query={"ids": "1"})
    assert (reply.status_code, reply.json()["code"]) == (401, 105002)


@pytest.mark.parametrize(
    ("path", "body", "query"),
    [
        ("/fulfillment/202309/orders/576000000001001003/packages", {"tracking_number": "1Z"}, {}),
        ("/return_refund/202309/cancellations", {"order_id": "5760", "cancel_reason": 7}, {}),
        ("/product/202309/products/1/inventory/update", {"skus": [{"id": "1", "inventory": [{"quantity": 1.5}]}]}, {}),
        ("/product/202502/products/search", {"seller_skus": [str(i) for i in range(11)]}, {"page_size": "10"}),
        ("/return_refund/202309/cancellations/search", {"order_ids": ["x"]}, {"page_size": "10"}),
    ],
)
def test_write_bodies_are_checked_against_the_documented_shapes(tiktok_sandbox, path, body, query):
    # when
    reply = _call(tiktok_sandbox, "POST", path, query=query, body=body)
    # then
    assert (reply.status_code, reply.json()["code"]) == (400, 36009004), reply.json()
    assert tiktok_sandbox.state.contract_violations[-1]["path"] == path


def test_throttling_is_429_and_36009002(tiktok_sandbox):
    httpx.post(f"{tiktok_sandbox.base_url}/_sandbox/faults", json={"throttle_next": 1})
    reply = _call(tiktok_sandbox, "POST", SEARCH, query={"page_size": "10"}, body={})
    assert (reply.status_code, reply.json()["code"]) == (429, 36009002)
