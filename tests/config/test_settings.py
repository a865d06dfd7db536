from __future__ import annotations

import os
import subprocess
import sys

import pytest
from django.core.exceptions import ImproperlyConfigured

from config.celery import app as celery_app
from config.settings import BASE_DIR, _database_from_url


@pytest.mark.parametrize(
    ("url", "message"),
    [
        ("sqlite:///db.sqlite3", "PostgreSQL only"),
        ("mysql://root@localhost/waybill", "PostgreSQL only"),
        ("not a url", "PostgreSQL URL"),
        ("postgres://postgres@localhost:port/waybill", "invalid port"),
        ("postgres://postgres@localhost:5432", "names no database"),
    ],
)
def test_malformed_database_url_is_a_clear_error(url, message):
    with pytest.raises(ImproperlyConfigured, match=message):
        _database_from_url(url)


def test_postgres_database_url_is_parsed():
    config = _database_from_url("postgresql://app:s3cret@db.internal:6543/waybill")
    assert config["ENGINE"] == "django.db.backends.postgresql"
    assert (config["HOST"], config["PORT"], config["NAME"], config["USER"]) == ("db.internal", 6543, "waybill", "app")


def _manage(*args: str, **env: str) -> subprocess.CompletedProcess:
    base = {k: v for k, v in os.environ.items() if k not in {"DATABASE_URL", "WAYBILL_TESTING", "DEBUG"}}
    return subprocess.run(
        [sys.executable, "manage.py", *args],
        cwd=BASE_DIR,
        env={**base, **env},
        capture_output=True,
        text=True,
        timeout=120,
        check=False,
    )


def test_check_deploy_passes_with_production_settings():
    result = _manage(
        "check",
        "--deploy",
        DEBUG="0",
        SECRET_KEY="x" * 20 + "-production-secret-key-with-enough-entropy-" + "y" * 20,
        ALLOWED_HOSTS="oms.example.com",
        DATABASE_URL="postgres://waybill@127.0.0.1:5432/waybill",
        REDIS_URL="redis://127.0.0.1:6379/0",
        FIELD_ENCRYPTION_KEY="rLQ8mMdF1vKp2mO3oZ7F1c0nq7P8S0QeXc6hQw8cY1c=",
    )
    assert result.returncode == 0, result.stdout + result.stderr
    assert "security." not in result.stdout + result.stderr, result.stdout + result.stderr


def test_a_malformed_database_url_stops_manage_py_with_the_reason():
    result = _manage("check", DATABASE_URL="mysql://root@localhost/waybill")
    assert result.returncode != 0
    assert "PostgreSQL only" in result.stderr


def test_celery_is_json_only_with_limits_and_a_heartbeat_schedule():
    conf = celery_app.conf
    assert conf.task_serializer == "json" and conf.accept_content == ["json"]
    assert conf.task_time_limit and conf.task_soft_time_limit < conf.task_time_limit
    assert "heartbeat" in conf.beat_schedule


@pytest.mark.django_db
def test_heartbeat_task_records_when_a_worker_last_ran():
    from django.core.cache import cache

    from orders.tasks import HEARTBEAT_KEY, heartbeat_task

    result = heartbeat_task.delay()
    assert cache.get(HEARTBEAT_KEY) == result.get()


def test_openapi_schema_generates_and_validates_without_warnings(tmp_path):
    from django.core.management import call_command

    # given every API endpoint of every app; when the schema is generated; then no warning, valid OpenAPI
    call_command("spectacular", "--validate", "--fail-on-warn", "--file", str(tmp_path / "schema.yml"))
    text = (tmp_path / "schema.yml").read_text()
    for path in ("/api/v1/orders/", "/api/v1/stock-levels/"):
        assert path in text
