"""Shared helpers for the security tests: a scratch database next to the test database."""

from __future__ import annotations

import contextlib
import os
import subprocess
import sys
import uuid

import psycopg
from django.conf import settings
from django.db import connection


def _admin_dsn() -> dict:
    db = settings.DATABASES["default"]
    return {
        "host": db.get("HOST") or None,
        "port": int(db.get("PORT") or 5432),
        "user": db.get("USER") or None,
        "password": db.get("PASSWORD") or None,
        "dbname": "postgres",
        "autocommit": True,
    }


def database_url(name: str) -> str:
    db = settings.DATABASES["default"]
    password = f":{db['PASSWORD']}" if db.get("PASSWORD") else ""
    host = db.get("HOST") or "127.0.0.1"
    if host.startswith("/"):
        # A Unix socket directory (the embedded server): django-environ reads it from the host part, quoted.
        from urllib.parse import quote

        host = quote(host, safe="")
    return f"postgres://{db.get('USER') or 'postgres'}{password}@{host}:{db.get('PORT') or 5432}/{name}"


@contextlib.contextmanager
def scratch_database():
    """A new, empty database on the test server, dropped afterwards. Yields its name."""
    name = f"{connection.settings_dict['NAME']}_scratch_{uuid.uuid4().hex[:8]}"
    with psycopg.connect(**_admin_dsn()) as conn:
        conn.execute(f'CREATE DATABASE "{name}"')
    try:
        yield name
    finally:
        with psycopg.connect(**_admin_dsn()) as conn:
            conn.execute(f'DROP DATABASE IF EXISTS "{name}" WITH (FORCE)')


def database_env(name: str) -> dict[str, str]:
    """The environment that points a new process at database ``name`` on the test server.

    On the embedded server (a Unix socket, its password kept under var/pg) the process finds the
    server itself and only the database name changes; elsewhere it gets a DATABASE_URL.
    """
    if getattr(settings, "EMBEDDED_DATABASE", False):
        return {"WAYBILL_DATABASE_NAME": name}
    return {"DATABASE_URL": database_url(name)}


def manage(*args: str, database: str, env: dict | None = None, timeout: float = 600) -> subprocess.CompletedProcess:
    """Run manage.py against ``database`` in a new process."""
    full_env = {**os.environ, **database_env(database), **(env or {})}
    return subprocess.run(
        [sys.executable, "manage.py", *args],
        cwd=settings.BASE_DIR,
        env=full_env,
        capture_output=True,
        text=True,
        timeout=timeout,
        check=False,
    )
