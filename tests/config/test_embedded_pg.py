"""The embedded server: started when down, reused when up, recovered after a crash.

Each test uses its own cluster under var/ (never the one the suite runs on)."""

from __future__ import annotations

import json
import os
import subprocess
import sys
import uuid

import pytest

from config import embedded_pg
from config.embedded_pg import Cluster

pytestmark = pytest.mark.embedded

PROBE = """
import json, sys
import psycopg
from config.embedded_pg import Cluster, ensure_running
cluster = Cluster(__import__("pathlib").Path(sys.argv[1]))
params, started = ensure_running(cluster)
with psycopg.connect(host=params["HOST"], port=int(params["PORT"]), user=params["USER"],
                     password=params["PASSWORD"], dbname=params["NAME"]) as c:
    row = c.execute("SELECT pg_postmaster_start_time()::text, current_setting('data_directory')").fetchone()
print(json.dumps({"started": started, "postmaster_start": row[0], "data_directory": row[1]}))
"""


@pytest.fixture
def cluster():
    root = embedded_pg.VAR_DIR / "test-clusters" / uuid.uuid4().hex[:8]
    root.parent.mkdir(parents=True, exist_ok=True)
    cluster = Cluster(root)
    yield cluster
    embedded_pg.destroy(cluster)


def _probe(cluster: Cluster) -> dict:
    env = {k: v for k, v in os.environ.items() if k != "DATABASE_URL"}
    out = subprocess.run(
        [sys.executable, "-c", PROBE, str(cluster.root)],
        capture_output=True,
        text=True,
        timeout=180,
        env=env,
        cwd=embedded_pg.BASE_DIR,
        check=False,
    )
    assert out.returncode == 0, out.stderr
    return json.loads(out.stdout.strip().splitlines()[-1])


def test_started_when_down_and_reused_when_up_by_a_second_process(cluster):
    # given no server for this data directory
    assert embedded_pg.read_pid(cluster) is None
    # when two processes ask for it, one after the other
    first = _probe(cluster)
    second = _probe(cluster)
    # then the first started it and the second connected to that same server
    assert first["started"] is True and second["started"] is False
    assert first["postmaster_start"] == second["postmaster_start"]
    assert first["data_directory"] == second["data_directory"] == str(cluster.data)
    # and stopping leaves no server behind
    assert embedded_pg.stop(cluster) is True
    assert embedded_pg.read_pid(cluster) is None


def test_a_stale_pid_file_from_a_crashed_run_is_recovered(cluster):
    # given a cluster whose server died without cleaning up (pid file names a dead process)
    _probe(cluster)
    embedded_pg.stop(cluster)
    (cluster.data / "postmaster.pid").write_text("999999\n" + str(cluster.data) + "\n")
    # when
    result = _probe(cluster)
    # then the same data directory is started again: no second database
    assert result["started"] is True and result["data_directory"] == str(cluster.data)


def test_a_half_initialised_data_directory_is_moved_aside_not_reused(cluster):
    # given a data directory left by an initdb that crashed before writing PG_VERSION
    cluster.data.mkdir(parents=True)
    (cluster.data / "base").mkdir()
    # when
    result = _probe(cluster)
    # then a fresh cluster runs, and the broken one is kept for inspection
    assert result["started"] is True
    assert (cluster.data / "PG_VERSION").exists()
    assert list(cluster.root.glob("data.incomplete-*"))


def test_an_unstartable_server_says_why_and_how_to_use_database_url(cluster):
    # given a data directory from another PostgreSQL major version
    cluster.data.mkdir(parents=True)
    (cluster.data / "PG_VERSION").write_text("9\n")
    # when / then
    with pytest.raises(embedded_pg.EmbeddedPostgresError) as excinfo:
        embedded_pg.ensure_running(cluster)
    assert "PostgreSQL 9 cluster" in str(excinfo.value)
    assert "DATABASE_URL" in str(excinfo.value)


def test_a_running_server_whose_socket_vanished_is_reported_not_doubled(cluster):
    # given a running server whose socket file was removed under it (var/ deleted while it ran)
    _probe(cluster)
    (cluster.socket_dir / ".s.PGSQL.5432").unlink()
    # when / then: no second server on the same data directory, and a message that says what to do
    with pytest.raises(embedded_pg.EmbeddedPostgresError) as excinfo:
        embedded_pg.ensure_running(cluster)
    assert "socket" in str(excinfo.value) and "kill" in str(excinfo.value)
    assert embedded_pg.read_pid(cluster) is not None
