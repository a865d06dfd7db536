"""Waybill settings, read from the environment (django-environ).

DATABASE_URL unset -> the embedded PostgreSQL server under var/pg (started on demand).
REDIS_URL unset    -> a filesystem Celery broker under var/broker, so real worker and beat
                      processes still run without Redis.
"""

from __future__ import annotations

import ipaddress
import secrets
from pathlib import Path
from urllib.parse import urlsplit

import environ
from django.core.exceptions import ImproperlyConfigured

BASE_DIR = Path(__file__).resolve().parent.parent
VAR_DIR = BASE_DIR / "var"

env = environ.Env()
if (BASE_DIR / ".env").exists():
    environ.Env.read_env(str(BASE_DIR / ".env"))

DEBUG = env.bool("DEBUG", default=False)
TESTING = env.bool("WAYBILL_TESTING", default=False)


def _secret_key() -> str:
    value = env.str("SECRET_KEY", default="")
    if value:
        return value
    # Local runs only: a random key kept under var/ (never committed), stable across restarts.
    key_file = VAR_DIR / "secret_key"
    VAR_DIR.mkdir(exist_ok=True)
    if not key_file.exists():
        key_file.write_text(secrets.token_urlsafe(64))
        key_file.chmod(0o600)
    return key_file.read_text().strip()


SECRET_KEY = _secret_key()
ALLOWED_HOSTS = env.list("ALLOWED_HOSTS", default=["localhost", "127.0.0.1", "[::1]"])
CSRF_TRUSTED_ORIGINS = env.list("CSRF_TRUSTED_ORIGINS", default=[])

# The channels' public API models (OpenAPI JSON, Shopify's GraphQL SDL), kept beside the checkout,
# never copied into it: the sandboxes serve and the tests validate against them.
CHANNEL_SPECS_DIR = Path(env.str("WAYBILL_CHANNEL_SPECS", default=str(BASE_DIR.parent / "shared" / "channel-specs")))

# Shared secret a TMS or carrier feed signs tracking webhooks with (HMAC-SHA256 of the raw body).
# Unset: the tracking webhook refuses every call (the REST endpoints with node tokens still work).
TRACKING_WEBHOOK_SECRET = env.str("TRACKING_WEBHOOK_SECRET", default="")

# Fernet keys, comma-separated, newest first: old keys keep decrypting during a rotation.
FIELD_ENCRYPTION_KEY = env.list("FIELD_ENCRYPTION_KEY", default=[])

INSTALLED_APPS = [
    "django.contrib.admin",
    "django.contrib.auth",
    "django.contrib.contenttypes",
    "django.contrib.sessions",
    "django.contrib.messages",
    "whitenoise.runserver_nostatic",
    "django.contrib.staticfiles",
    "django.contrib.postgres",
    "django.contrib.humanize",
    "rest_framework",
    "rest_framework.authtoken",
    "django_filters",
    "django_htmx",
    "drf_spectacular",
    "drf_spectacular_sidecar",
    "django_celery_beat",
    "orders",
    "inventory",
    "fulfillment",
    "channels",
    "returns",
    "scorecards",
]

MIDDLEWARE = [
    "django.middleware.security.SecurityMiddleware",
    "whitenoise.middleware.WhiteNoiseMiddleware",
    "django.contrib.sessions.middleware.SessionMiddleware",
    "django.middleware.common.CommonMiddleware",
    "django.middleware.csrf.CsrfViewMiddleware",
    "django.contrib.auth.middleware.AuthenticationMiddleware",
    # Deny by default: every view needs a login unless marked login_not_required.
    "config.middleware.ConsoleLoginRequiredMiddleware",
    "django.contrib.messages.middleware.MessageMiddleware",
    "django.middleware.clickjacking.XFrameOptionsMiddleware",
    "django_htmx.middleware.HtmxMiddleware",
    # Last: console lists and scorecards read from the replica when one is configured.
    "config.kernel.replica.ReplicaReadsMiddleware",
]

ROOT_URLCONF = "config.urls"
WSGI_APPLICATION = "config.wsgi.application"
ASGI_APPLICATION = "config.asgi.application"

TEMPLATES = [
    {
        "BACKEND": "django.template.backends.django.DjangoTemplates",
        "DIRS": [BASE_DIR / "templates"],
        "APP_DIRS": True,
        "OPTIONS": {
            "context_processors": [
                "django.template.context_processors.request",
                "django.contrib.auth.context_processors.auth",
                "django.contrib.messages.context_processors.messages",
                "orders.context_processors.console",
            ],
        },
    }
]

# --- Database: PostgreSQL everywhere -------------------------------------------------------
_POSTGRES_SCHEMES = {"postgres", "postgresql", "pgsql"}


def _database_from_url(url: str) -> dict:
    parts = urlsplit(url)
    if parts.scheme not in _POSTGRES_SCHEMES:
        raise ImproperlyConfigured(
            f"DATABASE_URL must be a PostgreSQL URL such as postgres://user:password@host:5432/waybill; "
            f"got scheme {parts.scheme or '(none)'!r}. Waybill runs on PostgreSQL only."
        )
    try:
        parts.port  # noqa: B018 - raises ValueError on a non-numeric port
    except ValueError as exc:
        raise ImproperlyConfigured(f"DATABASE_URL has an invalid port: {exc}") from exc
    if not parts.path.strip("/"):
        raise ImproperlyConfigured(
            "DATABASE_URL names no database: add it after the host, e.g. postgres://postgres@127.0.0.1:5432/waybill"
        )
    config = env.db_url_config(url)
    config["ENGINE"] = "django.db.backends.postgresql"
    return config


DATABASE_URL = env.str("DATABASE_URL", default="")
if DATABASE_URL:
    _db = _database_from_url(DATABASE_URL)
    EMBEDDED_DATABASE = False
else:
    from config.embedded_pg import EmbeddedPostgresError, ensure_running

    try:
        _params, _ = ensure_running()
    except EmbeddedPostgresError as exc:
        raise ImproperlyConfigured(str(exc)) from exc
    _db = {"ENGINE": "django.db.backends.postgresql", **_params}
    EMBEDDED_DATABASE = True

# A process started by a test (the kill tests' worker and beat) works in that test's database.
if env.str("WAYBILL_DATABASE_NAME", default=""):
    _db["NAME"] = env.str("WAYBILL_DATABASE_NAME")
_db.update(
    {
        # Persistent connections: a new connection per request costs x5 in throughput here.
        "CONN_MAX_AGE": env.int("CONN_MAX_AGE", default=600),
        "CONN_HEALTH_CHECKS": True,
        "ATOMIC_REQUESTS": False,
        "TEST": {"NAME": env.str("TEST_DATABASE_NAME", default="test_waybill")},
    }
)
_db.setdefault("OPTIONS", {})
_db["OPTIONS"].setdefault("application_name", "waybill")
DATABASES = {"default": _db}
# A streaming replica of the primary (README: production): console lists and scorecards read from it,
# everything else (writes, transactions, a request after its own write) from the primary (config/kernel/replica.py).
DATABASE_REPLICA_URL = env.str("DATABASE_REPLICA_URL", default="")
if DATABASE_REPLICA_URL:
    _replica = _database_from_url(DATABASE_REPLICA_URL)
    _replica.update(
        {
            "CONN_MAX_AGE": _db["CONN_MAX_AGE"],
            "CONN_HEALTH_CHECKS": True,
            "ATOMIC_REQUESTS": False,
            # Tests point the replica at the primary's test database rather than creating one.
            "TEST": {"MIRROR": "default"},
        }
    )
    _replica.setdefault("OPTIONS", {})
    _replica["OPTIONS"].setdefault("application_name", "waybill-replica")
    DATABASES["replica"] = _replica
DATABASE_ROUTERS = ["config.kernel.replica.ReplicaRouter"]
WAYBILL_REPLICA_VIEWS = env.list(
    "WAYBILL_REPLICA_VIEWS",
    default=[
        "orders:list",
        "orders:exceptions",
        "channels:runs",
        "channels:inbound",
        "channels:outbox",
        "fulfillment:shipments",
        "returns:queue",
        "scorecards:index",
        "scorecards:tiles",
        "scorecards:account",
        "scorecards:metric-orders",
    ],
)
# After a request that wrote, the same browser reads the primary this long (the replica's lag is below it).
WAYBILL_REPLICA_PIN_SECONDS = env.int("WAYBILL_REPLICA_PIN_SECONDS", default=5)
DEFAULT_AUTO_FIELD = "django.db.models.BigAutoField"
MINIMUM_POSTGRES_VERSION = 150000

# --- Cache and Celery --------------------------------------------------------------------------
REDIS_URL = env.str("REDIS_URL", default="")
if REDIS_URL:
    CACHES = {"default": {"BACKEND": "django.core.cache.backends.redis.RedisCache", "LOCATION": REDIS_URL}}
    CELERY_BROKER_URL = REDIS_URL
    CELERY_BROKER_TRANSPORT_OPTIONS = {"visibility_timeout": 2 * 60 * 60}
else:
    CACHES = {
        "default": {
            # config/cache.py: the file-based cache without a directory listing on every write.
            "BACKEND": "config.cache.FileCache",
            "LOCATION": str(VAR_DIR / "cache"),
        }
    }
    # WAYBILL_BROKER_DIR: a broker folder of its own (the kill tests' worker, a soak beside a demo).
    _broker = Path(env.str("WAYBILL_BROKER_DIR", default=str(VAR_DIR / "broker")))
    for _folder in ("queue", "processed", "control"):
        (_broker / _folder).mkdir(parents=True, exist_ok=True)
    CELERY_BROKER_URL = "filesystem://"
    # Kombu's filesystem transport with message files written whole (config/broker.py says why).
    CELERY_BROKER_TRANSPORT = "config.broker:Transport"
    CELERY_BROKER_TRANSPORT_OPTIONS = {
        "data_folder_in": str(_broker / "queue"),
        "data_folder_out": str(_broker / "queue"),
        "processed_folder": str(_broker / "processed"),
        "control_folder": str(_broker / "control"),
        "store_processed": False,
        # How long an idle worker waits before looking at the folder again (Kombu's default is 1 s):
        # tests/benchmarks/RESULTS.md has the throughput measured with it.
        "polling_interval": env.float("WAYBILL_BROKER_POLLING_INTERVAL", default=0.1),
    }
# The queue tasks go to: a worker started by a test takes only that test's tasks.
CELERY_TASK_DEFAULT_QUEUE = env.str("WAYBILL_CELERY_QUEUE", default="celery")
# The stock pushes on a queue of their own, served by a worker that takes nothing else (config.stack's "pusher";
# in production: `celery -A config worker --queues $WAYBILL_PUSH_QUEUE`): a sync or drain asleep in a channel's
# rate-limit wait then never delays the push of a sold-out SKU. Unset: they share the default queue.
WAYBILL_PUSH_QUEUE = env.str("WAYBILL_PUSH_QUEUE", default="")
# The shortest time between two recomputes of the advertised quantities in a burst of stock changes
# (channels.availability.debounce_seconds; unset: 0.02 s, none when Celery runs eagerly).
INVENTORY_AVAILABILITY_DEBOUNCE_SECONDS = env.float("INVENTORY_AVAILABILITY_DEBOUNCE_SECONDS", default=None)
if WAYBILL_PUSH_QUEUE:
    CELERY_TASK_ROUTES = {
        name: {"queue": WAYBILL_PUSH_QUEUE}
        for name in ("channels.tasks.channel_availability_recompute_task", "channels.tasks.inventory_push_account_task")
    }

CELERY_TASK_ALWAYS_EAGER = TESTING or env.bool("CELERY_TASK_ALWAYS_EAGER", default=False)
CELERY_TASK_EAGER_PROPAGATES = True
# django-celery-beat's database scheduler that skips an entry whose last message is still waiting.
CELERY_BEAT_SCHEDULER = "config.beat:Scheduler"

# --- Auth ---------------------------------------------------------------------------------------
AUTH_PASSWORD_VALIDATORS = [
    {"NAME": "django.contrib.auth.password_validation.UserAttributeSimilarityValidator"},
    {"NAME": "django.contrib.auth.password_validation.MinimumLengthValidator"},
    {"NAME": "django.contrib.auth.password_validation.CommonPasswordValidator"},
    {"NAME": "django.contrib.auth.password_validation.NumericPasswordValidator"},
]
LOGIN_URL = "login"
LOGIN_REDIRECT_URL = "dashboard"
LOGOUT_REDIRECT_URL = "login"

# --- I18N / time: always timezone-aware ---------------------------------------------------------
LANGUAGE_CODE = "en-us"
TIME_ZONE = env.str("TIME_ZONE", default="UTC")
USE_I18N = True
USE_TZ = True

# --- Static files (vendored, served by WhiteNoise; nothing from a CDN) ----------------------------
STATIC_URL = "static/"
STATIC_ROOT = VAR_DIR / "staticfiles"
STATICFILES_DIRS = [BASE_DIR / "static"]
STORAGES = {
    "default": {"BACKEND": "django.core.files.storage.FileSystemStorage"},
    "staticfiles": {
        "BACKEND": "django.contrib.staticfiles.storage.StaticFilesStorage"
        if DEBUG or TESTING
        else "whitenoise.storage.CompressedManifestStaticFilesStorage"
    },
}
WHITENOISE_USE_FINDERS = DEBUG or TESTING
STATIC_ROOT.mkdir(parents=True, exist_ok=True)

# --- REST API -------------------------------------------------------------------------------------
REST_FRAMEWORK = {
    "DEFAULT_AUTHENTICATION_CLASSES": [
        # Token first: an anonymous API call answers 401 with WWW-Authenticate, not a 403.
        "rest_framework.authentication.TokenAuthentication",
        "rest_framework.authentication.SessionAuthentication",
    ],
    "DEFAULT_PERMISSION_CLASSES": ["config.kernel.api.ModelPermissionsWithView"],
    "DEFAULT_FILTER_BACKENDS": ["django_filters.rest_framework.DjangoFilterBackend"],
    "DEFAULT_SCHEMA_CLASS": "drf_spectacular.openapi.AutoSchema",
    "DEFAULT_PAGINATION_CLASS": "config.kernel.api.CursorPage",
    "PAGE_SIZE": 50,
    "EXCEPTION_HANDLER": "config.kernel.api_errors.exception_handler",
}
SPECTACULAR_SETTINGS = {
    "TITLE": "Waybill API",
    "DESCRIPTION": "Orders, inventory and fulfilment for WMS, TMS and 3PL integrations.",
    "VERSION": "1",
    "SERVE_INCLUDE_SCHEMA": False,
    "SWAGGER_UI_DIST": "SIDECAR",
    "SWAGGER_UI_FAVICON_HREF": "SIDECAR",
    "REDOC_DIST": "SIDECAR",
    "SERVE_PERMISSIONS": ["rest_framework.permissions.IsAuthenticated"],
    "ENUM_NAME_OVERRIDES": {
        "OrderStatusEnum": "orders.models.OrderStatus",
        "LineStatusEnum": "orders.models.LineStatus",
        # An order's service level and a shipment's kind are one choice set (ship, pickup, ship from store).
        "ServiceLevelEnum": "fulfillment.models.ShipmentKind",
        "InboundKindEnum": "inventory.models.InboundKind",
        # The orders API's overrides and exception queue (fulfillment/api_overrides.py).
        "HoldKindEnum": "orders.models.HoldKind",
        "ExceptionKindEnum": "orders.models.ExceptionKind",
        # Returns (issue #18): a unit's disposition (pending until inspected), an inspection's, the reason.
        "ReturnDispositionEnum": "returns.models.Disposition",
        "InspectedDispositionEnum": "returns.serializers.FINAL",
        "ReturnReasonEnum": "returns.models.ReturnReason",
    },
}

# --- Reconciliation (channels/reconcile.py) ------------------------------------------------------
# Each account's orders and advertised stock are compared with the channel's this often (a beat dispatcher
# checks every minute), over the orders the channel updated within the window.
WAYBILL_RECONCILE_INTERVAL_SECONDS = env.int("WAYBILL_RECONCILE_INTERVAL_SECONDS", default=3600)
WAYBILL_RECONCILE_WINDOW_DAYS = env.int("WAYBILL_RECONCILE_WINDOW_DAYS", default=30)
# Seconds between the reader's pages, per channel kind, to keep to a share of the plan's rate budget on top
# of yielding to a running sync (e.g. {"amazon": 360} keeps Amazon's 0.0056 rps searchOrders at half).
WAYBILL_RECONCILE_PACE_SECONDS = env.json("WAYBILL_RECONCILE_PACE_SECONDS", default={})
# The share of a channel's reported rate budget (Shopify's query cost bucket) the reader leaves to the sync.
WAYBILL_RECONCILE_BUDGET_RESERVE = env.float("WAYBILL_RECONCILE_BUDGET_RESERVE", default=0.5)
# Orders open here that the channel's pages did not include, read again by id per run.
WAYBILL_RECONCILE_BY_ID_LIMIT = env.int("WAYBILL_RECONCILE_BY_ID_LIMIT", default=200)
# A write the channel acknowledged this recently may not show in its reads yet: not drift until then.
WAYBILL_RECONCILE_SETTLE_SECONDS = env.int("WAYBILL_RECONCILE_SETTLE_SECONDS", default=900)
# --- end of reconciliation ---------------------------------------------------------------------------

# --- Security (manage.py check --deploy passes with DEBUG off and production variables set) ------
SECURE_PROXY_SSL_HEADER = ("HTTP_X_FORWARDED_PROTO", "https")
SECURE_SSL_REDIRECT = env.bool("SECURE_SSL_REDIRECT", default=not DEBUG and not TESTING and bool(DATABASE_URL))
SESSION_COOKIE_SECURE = env.bool("SESSION_COOKIE_SECURE", default=SECURE_SSL_REDIRECT)
CSRF_COOKIE_SECURE = env.bool("CSRF_COOKIE_SECURE", default=SECURE_SSL_REDIRECT)
SECURE_HSTS_SECONDS = env.int("SECURE_HSTS_SECONDS", default=31536000 if SECURE_SSL_REDIRECT else 0)
SECURE_HSTS_INCLUDE_SUBDOMAINS = SECURE_HSTS_SECONDS > 0
SECURE_HSTS_PRELOAD = SECURE_HSTS_SECONDS > 0
SECURE_CONTENT_TYPE_NOSNIFF = True
X_FRAME_OPTIONS = "DENY"

LOGGING = {
    "version": 1,
    "disable_existing_loggers": False,
    "formatters": {"plain": {"format": "%(asctime)s %(levelname)s %(name)s %(message)s"}},
    "handlers": {"console": {"class": "logging.StreamHandler", "formatter": "plain"}},
    "root": {"handlers": ["console"], "level": env.str("LOG_LEVEL", default="INFO")},
    "loggers": {
        "django.db.backends": {"level": "WARNING"},
        # httpx logs every request at INFO: channel syncs would drown the worker log.
        "httpx": {"level": "WARNING"},
        "httpcore": {"level": "WARNING"},
    },
}

# --- Ops console (exceptions at scale) -------------------------------------------------------------
# Who a new exception case of a kind goes to: "kind=username,kind=username" (empty: nobody, the queue).
WAYBILL_CASE_OWNERS = {
    kind.strip(): user.strip()
    for kind, _, user in (
        pair.partition("=") for pair in env.str("WAYBILL_CASE_OWNERS", default="").split(",") if "=" in pair
    )
}
# How often fulfillment.tasks.exceptions_detect_task looks for ship-by at risk, late shipments and stalled
# tracking (seconds), and the pick time a node needs before its cutoff when it names none (minutes).
WAYBILL_DETECT_SECONDS = env.float("WAYBILL_DETECT_SECONDS", default=15.0)
WAYBILL_PICK_MINUTES = env.int("WAYBILL_PICK_MINUTES", default=120)
WAYBILL_STALLED_TRACKING_HOURS = env.int("WAYBILL_STALLED_TRACKING_HOURS", default=48)
# How long the API keeps the answer to a call with an Idempotency-Key (a retry within it replays the answer);
# hourly, older ones are deleted (fulfillment.tasks.idempotency_records_prune_task).
WAYBILL_IDEMPOTENCY_KEEP_HOURS = env.int("WAYBILL_IDEMPOTENCY_KEEP_HOURS", default=24)
# --- Security: OWASP ASVS level 2 (config/security) ----------------------------------------------
INSTALLED_APPS += ["axes", "config.security"]
# Bad input is refused before any view (NUL bytes, oversize bodies, deep JSON); repeated API 401s
# from one address are throttled; django-axes (last) locks out repeated failed logins.
MIDDLEWARE.insert(
    MIDDLEWARE.index("django.middleware.security.SecurityMiddleware") + 1,
    "config.security.middleware.BadInputMiddleware",
)
MIDDLEWARE.insert(
    MIDDLEWARE.index("config.security.middleware.BadInputMiddleware") + 1,
    "config.security.middleware.ApiAuthThrottleMiddleware",
)
MIDDLEWARE.append("axes.middleware.AxesMiddleware")
AUTHENTICATION_BACKENDS = [
    "axes.backends.AxesStandaloneBackend",
    "django.contrib.auth.backends.ModelBackend",
]
# Console, admin and API logins: 5 failures for one username, or from one address, lock it for 15 minutes.
AXES_FAILURE_LIMIT = env.int("WAYBILL_LOGIN_FAILURE_LIMIT", default=5)
AXES_COOLOFF_TIME = env.float("WAYBILL_LOGIN_COOLOFF_MINUTES", default=15.0) / 60
AXES_LOCKOUT_PARAMETERS = ["username", "ip_address"]
AXES_RESET_ON_SUCCESS = True
AXES_VERBOSE = False
AXES_SENSITIVE_PARAMETERS = ["username", "password"]
# Behind a load balancer or reverse proxy, list its addresses/networks (comma-separated, e.g.
# 10.0.0.0/8): the client's address is then read from X-Forwarded-For through them only, so the
# login lockout and the API's authentication throttle count each client apart, not the proxy.
WAYBILL_TRUSTED_PROXIES = env.list("WAYBILL_TRUSTED_PROXIES", default=[])
for _proxy in WAYBILL_TRUSTED_PROXIES:
    try:
        ipaddress.ip_network(_proxy, strict=False)
    except ValueError as exc:
        raise ImproperlyConfigured(
            f"WAYBILL_TRUSTED_PROXIES: {_proxy!r} is not an IP address or network (e.g. 10.0.0.5 or 10.0.0.0/8)"
        ) from exc
AXES_CLIENT_IP_CALLABLE = "config.security.middleware.client_address"
# Off under WAYBILL_TESTING (the suite makes thousands of 401s from 127.0.0.1); its own test turns it on.
WAYBILL_API_AUTH_FAILURE_LIMIT = env.int("WAYBILL_API_AUTH_FAILURE_LIMIT", default=0 if TESTING else 20)
WAYBILL_API_AUTH_COOLOFF_SECONDS = env.int("WAYBILL_API_AUTH_COOLOFF_SECONDS", default=900)
# Idle sessions end after WAYBILL_SESSION_IDLE_MINUTES (IdleSessionMiddleware); none lives past a working day.
WAYBILL_SESSION_IDLE_MINUTES = env.int("WAYBILL_SESSION_IDLE_MINUTES", default=30)
SESSION_COOKIE_AGE = env.int("WAYBILL_SESSION_MAX_HOURS", default=12) * 3600
MIDDLEWARE.insert(
    MIDDLEWARE.index("django.contrib.auth.middleware.AuthenticationMiddleware") + 1,
    "config.security.sessions.IdleSessionMiddleware",
)
SESSION_COOKIE_HTTPONLY = True
SESSION_COOKIE_SAMESITE = "Lax"
CSRF_COOKIE_SAMESITE = "Lax"
# ASVS 2.1.1: at least 12 characters.
AUTH_PASSWORD_VALIDATORS[1] = {
    "NAME": "django.contrib.auth.password_validation.MinimumLengthValidator",
    "OPTIONS": {"min_length": 12},
}
DATA_UPLOAD_MAX_MEMORY_SIZE = env.int("WAYBILL_MAX_BODY_BYTES", default=5 * 1024 * 1024)
DATA_UPLOAD_MAX_NUMBER_FIELDS = 2000
WAYBILL_JSON_MAX_DEPTH = env.int("WAYBILL_JSON_MAX_DEPTH", default=32)
# Integration tokens (hashed, expiring, scoped) replace DRF's plaintext authtoken table.
INSTALLED_APPS.remove("rest_framework.authtoken")
REST_FRAMEWORK["DEFAULT_AUTHENTICATION_CLASSES"] = [
    # First: an anonymous API call answers 401 with WWW-Authenticate, not a 403.
    "config.security.tokens.IntegrationTokenAuthentication",
    "rest_framework.authentication.SessionAuthentication",
]
LOGGING["filters"] = {"one_line_403": {"()": "config.security.log_filters.OneLineForbidden"}}
LOGGING["handlers"]["console"]["filters"] = ["one_line_403"]
