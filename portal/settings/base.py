"""Settings for every control-plane process, read from the environment.

Defaults run the whole cloud on one machine, in production mode: Django's debug pages only with
``CLOUD_DEBUG=1``. Secrets come only from the environment; outside debug mode a missing secret stops the
process at start-up with a message naming every one that is missing. In debug mode they are generated
once into ``<state dir>/secrets/`` (0600) instead.
"""

from __future__ import annotations

import os
from pathlib import Path

import dj_database_url
import jinja2
from django.core.exceptions import ImproperlyConfigured

from compute_tasks import request_ids

BASE_DIR = Path(__file__).resolve().parents[2]
STATE_DIR = Path(os.environ.get("CLOUD_STATE_DIR", BASE_DIR / "var"))


def env(name: str, default: str | None = None) -> str | None:
    return os.environ.get(name, default)


def env_bool(name: str, default: bool = False) -> bool:
    value = os.environ.get(name)
    if value is None:
        return default
    return value.strip().lower() in {"1", "true", "yes", "on"}


def env_int(name: str, default: int) -> int:
    value = os.environ.get(name)
    if value is None or value == "":
        return default
    try:
        return int(value)
    except ValueError:
        raise ImproperlyConfigured(f"{name} must be an integer, got {value!r}") from None


# Secrets this module read that the environment did not hold (outside debug mode): reported all at once
# at the end of the module, so an operator fixes them in one go.
_MISSING_SECRETS: list[str] = []


def required_secret(name: str) -> str:
    value = os.environ.get(name)
    if value:
        return value
    if DEBUG:
        # Single-machine development: a secret kept in the state dir keeps sessions and signed URLs valid
        # across restarts without anyone having to invent one.
        return _local_secret(name)
    _MISSING_SECRETS.append(name)
    return ""


def _local_secret(name: str) -> str:
    import secrets
    import tempfile

    path = STATE_DIR / "secrets" / name.lower()
    if not path.exists():
        path.parent.mkdir(parents=True, exist_ok=True, mode=0o700)
        # Written whole into a 0600 file, then linked into place: never readable by others, never seen
        # half-written, and of two processes starting at once both end up with the first one's secret.
        fd, temporary = tempfile.mkstemp(dir=path.parent)
        try:
            with os.fdopen(fd, "w") as out:
                out.write(secrets.token_urlsafe(48))
            os.link(temporary, path)
        except FileExistsError:
            pass
        finally:
            os.unlink(temporary)
    return path.read_text().strip()


# Off unless asked for: the debug pages show settings, the broker URL and tracebacks to whoever can reach
# the API, so a cloud started with the defaults must never serve them.
DEBUG = env_bool("CLOUD_DEBUG", False)
SECRET_KEY = required_secret("DJANGO_SECRET_KEY")
ALLOWED_HOSTS = [h.strip() for h in env("ALLOWED_HOSTS", "127.0.0.1,localhost,[::1]").split(",") if h.strip()]

INSTALLED_APPS = [
    "django.contrib.admin",
    "django.contrib.auth",
    "django.contrib.contenttypes",
    "django.contrib.sessions",
    "django.contrib.messages",
    "django.contrib.staticfiles",
    "rest_framework",
    "portal",
]

MIDDLEWARE = [
    # First: every answer carries its request's id, and everything after runs inside it.
    "portal.api.request_ids.RequestIdMiddleware",
    "portal.metrics.middleware.RequestMetricsMiddleware",
    "django.middleware.security.SecurityMiddleware",
    "whitenoise.middleware.WhiteNoiseMiddleware",
    "django.contrib.sessions.middleware.SessionMiddleware",
    "django.middleware.common.CommonMiddleware",
    "django.middleware.csrf.CsrfViewMiddleware",
    "django.contrib.auth.middleware.AuthenticationMiddleware",
    "django.contrib.messages.middleware.MessageMiddleware",
    "django.middleware.clickjacking.XFrameOptionsMiddleware",
]

ROOT_URLCONF = "portal.urls"
WSGI_APPLICATION = "portal.wsgi.application"

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
            ],
        },
    },
    {
        # For the few templates that render many times per page (the instance list's rows).
        "NAME": "jinja2",
        "BACKEND": "django.template.backends.jinja2.Jinja2",
        "DIRS": [BASE_DIR / "templates" / "jinja2"],
        "APP_DIRS": False,
        "OPTIONS": {"undefined": jinja2.StrictUndefined},
    },
]


def database(url: str, **options) -> dict:
    """dj_database_url's settings for ``url``, with the project's backends in place of Django's."""
    config = dj_database_url.parse(url, **options)
    if config["ENGINE"] == "django.db.backends.sqlite3":
        # Django's backend but for the database file's mode: 0600 (portal/db/sqlite3/base.py).
        config["ENGINE"] = "portal.db.sqlite3"
        # SQLite serialises writers; waiting beats failing with "database is locked" under a demo's load.
        config["OPTIONS"] = {"timeout": 20, "transaction_mode": "IMMEDIATE"}
    elif config["ENGINE"] == "django.db.backends.postgresql":
        # Django's backend but for the timestamps' loader and the idle health check (portal/db/postgresql).
        config["ENGINE"] = "portal.db.postgresql"
    return config


DATABASES = {
    "default": database(
        env("DATABASE_URL", f"sqlite:///{STATE_DIR / 'cloud.sqlite3'}"), conn_max_age=60, conn_health_checks=True
    )
}
DEFAULT_AUTO_FIELD = "django.db.models.BigAutoField"

LANGUAGE_CODE = "en-us"
TIME_ZONE = "UTC"
USE_I18N = False
USE_TZ = True

STATIC_URL = "static/"
STATIC_ROOT = STATE_DIR / "static"
STORAGES = {
    "default": {"BACKEND": "django.core.files.storage.FileSystemStorage"},
    "staticfiles": {"BACKEND": "whitenoise.storage.CompressedStaticFilesStorage"},
}
APPEND_SLASH = False
LOGIN_URL = "portal:login"
LOGIN_REDIRECT_URL = "portal:instances"
LOGOUT_REDIRECT_URL = "portal:login"
# Local users first; with KEYSTONE_AUTH_URL set, a name and password Django does not know go to Keystone.
AUTHENTICATION_BACKENDS = [
    "django.contrib.auth.backends.ModelBackend",
    "portal.auth.keystone_backend.KeystoneBackend",
]

REST_FRAMEWORK = {
    "DEFAULT_AUTHENTICATION_CLASSES": [
        "portal.auth.authentication.ProjectBasicAuthentication",
        "portal.auth.keystone_authentication.KeystoneTokenAuthentication",
        "portal.auth.identity_authentication.LocalTokenAuthentication",
        "portal.auth.authentication.ProjectSessionAuthentication",
    ],
    "DEFAULT_PERMISSION_CLASSES": ["rest_framework.permissions.IsAuthenticated"],
    "DEFAULT_RENDERER_CLASSES": ["portal.api.renderers.JSONRenderer"],
    "DEFAULT_PARSER_CLASSES": ["rest_framework.parsers.JSONParser"],
    "EXCEPTION_HANDLER": "portal.api.errors.openstack_exception_handler",
    "UNAUTHENTICATED_USER": None,
}

# --- Celery: the broker carries every message; no result backend (results come back as tasks) ---------
CELERY_BROKER_URL = env("CELERY_BROKER_URL", "redis://127.0.0.1:6379/0")
CELERY_TASK_SERIALIZER = "json"
CELERY_ACCEPT_CONTENT = ["json"]
CELERY_TASK_ACKS_LATE = True
CELERY_TASK_REJECT_ON_WORKER_LOST = True
CELERY_WORKER_PREFETCH_MULTIPLIER = 1
CELERY_TASK_IGNORE_RESULT = True
CELERY_BROKER_CONNECTION_RETRY_ON_STARTUP = True
CELERY_TASK_DEFAULT_QUEUE = "conductor"
# No message is sent with a priority, so one Redis list per queue (kombu keeps four by default): a worker
# waits on every list of every queue it serves, and a worker serving many hosts' queues renews that wait,
# naming them all, after each message. The same in compute_tasks/worker.py.
CELERY_BROKER_TRANSPORT_OPTIONS = {"priority_steps": [0]}
# See compute_tasks/worker.py: the reduction after a reconnection can leave a worker consuming nothing.
CELERY_WORKER_ENABLE_PREFETCH_COUNT_REDUCTION = False
# Every line of the conductor and beat names the request it is about (compute_tasks.request_ids).
CELERY_WORKER_LOG_FORMAT = request_ids.LOG_FORMAT
CELERY_WORKER_TASK_LOG_FORMAT = request_ids.TASK_LOG_FORMAT

# --- Our own settings, one namespace each ------------------------------------------------------------
CLOUD = {
    # Where clients reach the API; used in links, image download URLs and the version documents.
    "PUBLIC_URL": env("CLOUD_PUBLIC_URL", "http://127.0.0.1:8000").rstrip("/"),
    # The control plane's signing key is derived from this secret: every message to a host is signed
    # with it, and hosts believe nothing else (compute_tasks/signing.py). Its public half goes into each
    # host's credentials at enrollment (manage.py host_enroll).
    "SIGNING_KEY": required_secret("CLOUD_SIGNING_KEY"),
    "DEFAULT_AVAILABILITY_ZONE": env("DEFAULT_AVAILABILITY_ZONE", "nova"),
    "IMAGE_DIR": Path(env("IMAGE_DIR", str(STATE_DIR / "images"))),
    "IMAGE_URL_TTL": env_int("IMAGE_URL_TTL", 900),
    "MAX_IMAGE_SIZE": env_int("MAX_IMAGE_SIZE", 10 * 1024**3),
    # Every server gets a config drive (its metadata, key and user data), asked for or not: this cloud
    # has no metadata service, so the drive is how they reach the guest. 0: only when asked for.
    "FORCE_CONFIG_DRIVE": env_bool("FORCE_CONFIG_DRIVE", True),
    # How long an instance may stay in each task state before the reaper ends it with a fault.
    "TASK_LEASES": {
        "scheduling": env_int("LEASE_SCHEDULING", 120),
        # Each step of a build on its host has this lease (a step only leads to a later one).
        "networking": env_int("LEASE_SPAWNING", 600),
        "block_device_mapping": env_int("LEASE_SPAWNING", 600),
        "spawning": env_int("LEASE_SPAWNING", 600),
        "powering-on": env_int("LEASE_POWER", 180),
        "powering-off": env_int("LEASE_POWER", 180),
        "rebooting": env_int("LEASE_POWER", 180),
        "rebooting_hard": env_int("LEASE_POWER", 180),
        "pausing": env_int("LEASE_POWER", 180),
        "unpausing": env_int("LEASE_POWER", 180),
        "suspending": env_int("LEASE_POWER", 180),
        "resuming": env_int("LEASE_POWER", 180),
        "rebuilding": env_int("LEASE_SPAWNING", 600),
        "image_snapshot": env_int("LEASE_SNAPSHOT", 1800),
        "resize_prep": env_int("LEASE_SCHEDULING", 120),
        "resize_migrating": env_int("LEASE_SNAPSHOT", 1800),
        "resize_migrated": env_int("LEASE_POWER", 180),
        "resize_finish": env_int("LEASE_SPAWNING", 600),
        "resize_confirming": env_int("LEASE_DELETING", 300),
        "resize_reverting": env_int("LEASE_SPAWNING", 600),
        "shelving": env_int("LEASE_SNAPSHOT", 1800),
        "shelving_offloading": env_int("LEASE_DELETING", 300),
        "unshelving": env_int("LEASE_SPAWNING", 600),
        "rescuing": env_int("LEASE_SPAWNING", 600),
        "unrescuing": env_int("LEASE_SPAWNING", 600),
        "migrating": env_int("LEASE_LIVE_MIGRATION", 1800),
        "deleting": env_int("LEASE_DELETING", 300),
    },
    # A moved server waiting in VERIFY_RESIZE is confirmed by the conductor after this many seconds
    # (0: never, as Nova's ``resize_confirm_window`` default).
    "RESIZE_CONFIRM_WINDOW": env_int("RESIZE_CONFIRM_WINDOW", 0),
    # A shelved server's host is freed this many seconds after it was shelved: 0 at once, -1 never
    # (Nova's ``shelved_offload_time``).
    "SHELVED_OFFLOAD_TIME": env_int("SHELVED_OFFLOAD_TIME", 0),
    # A resize may keep the server on its host when the scheduler finds that best (a cold migration
    # always leaves it).
    "ALLOW_RESIZE_TO_SAME_HOST": env_bool("ALLOW_RESIZE_TO_SAME_HOST", True),
    # Whether every host mounts the same instance directory (then a live migration need not copy disks).
    "SHARED_INSTANCE_STORAGE": env_bool("SHARED_INSTANCE_STORAGE", False),
    # How many servers of one host a drain moves at the same time.
    "DRAIN_PARALLEL": env_int("DRAIN_PARALLEL", 2),
    "NETWORK": {
        # What a server asking for ``networks: auto`` (or for nothing) gets: "tenant", a port on the
        # project's own network, made on first use (Nova's get-me-a-network); "user", one QEMU user-mode
        # NIC labelled ``label`` (outbound only, no network controller involved).
        "mode": env("NETWORK_MODE", "tenant"),
        "label": env("NETWORK_LABEL", "private"),
        # VXLAN network ids handed to tenant networks, inclusive.
        "VNI_MIN": env_int("NETWORK_VNI_MIN", 1000),
        "VNI_MAX": env_int("NETWORK_VNI_MAX", 1999),
        # The MTU of the hosts' underlay: a flat network gets it, a VXLAN network 50 bytes less.
        "UNDERLAY_MTU": env_int("NETWORK_UNDERLAY_MTU", 1500),
        # The subnet of a network that ``networks: auto`` makes, and the DNS servers its DHCP hands out
        # (none: the network's own DHCP server answers for the network's names only).
        "AUTO_CIDR": env("NETWORK_AUTO_CIDR", "10.0.0.0/24"),
        "DNS_NAMESERVERS": [s for s in env("NETWORK_DNS_NAMESERVERS", "").split(",") if s],
    },
    # A request still waiting for a host this long after it was sent is sent again (its message was
    # lost), at most this many times; the scheduling lease ends it in ERROR after that.
    "SCHEDULING_RESEND_AFTER": env_int("SCHEDULING_RESEND_AFTER", 30),
    "SCHEDULING_MAX_RESENDS": env_int("SCHEDULING_MAX_RESENDS", 3),
    # Seconds os-getConsoleOutput waits for the server's host to send the tail of its serial log.
    "CONSOLE_OUTPUT_TIMEOUT": env_int("CONSOLE_OUTPUT_TIMEOUT", 10),
    # The bearer token a Prometheus scraper sends to /metrics (docs/observability.md); unset, only admins
    # may read it. A secret: from the environment only.
    "METRICS_TOKEN": env("METRICS_TOKEN", "") or "",
    # Seconds /metrics waits for the broker when it asks for the queues' lengths.
    "METRICS_BROKER_TIMEOUT": float(env("METRICS_BROKER_TIMEOUT", "2")),
}

# Prometheus counters of the API and conductor processes (docs/observability.md): every process of this
# machine writes its own into this directory (prometheus_client's multiprocess mode) and /metrics sums them.
# prometheus_client reads the variable when it is first imported, which is after the settings.
METRICS_DIR = Path(env("PROMETHEUS_MULTIPROC_DIR", str(STATE_DIR / "metrics")))
os.environ["PROMETHEUS_MULTIPROC_DIR"] = str(METRICS_DIR)
METRICS_DIR.mkdir(parents=True, exist_ok=True, mode=0o700)

SCHEDULER = {
    # Run in this order; see docs/scheduler.md for what each does.
    "FILTERS": [
        "ComputeFilter",
        "AvailabilityZoneFilter",
        "RamFilter",
        "CoreFilter",
        "DiskFilter",
        "NumInstancesFilter",
        "ComputeCapabilitiesFilter",
        "ImagePropertiesFilter",
        "AggregateInstanceExtraSpecsFilter",
        "AggregateMultiTenancyIsolation",
        "SameHostFilter",
        "DifferentHostFilter",
        "ServerGroupAntiAffinityFilter",
        "ServerGroupAffinityFilter",
    ],
    # Weigher -> multiplier; every weigher's scores are scaled to 0..1 before the multiplier applies.
    "WEIGHERS": {
        "RAMWeigher": float(env("SCHEDULER_RAM_WEIGHT_MULTIPLIER", "1.0")),
        "CPUWeigher": float(env("SCHEDULER_CPU_WEIGHT_MULTIPLIER", "1.0")),
        "DiskWeigher": float(env("SCHEDULER_DISK_WEIGHT_MULTIPLIER", "1.0")),
        "NumInstancesWeigher": float(env("SCHEDULER_NUM_INSTANCES_WEIGHT_MULTIPLIER", "0.0")),
        "ServerGroupSoftAffinityWeigher": float(env("SCHEDULER_SOFT_AFFINITY_WEIGHT_MULTIPLIER", "1.0")),
        "ServerGroupSoftAntiAffinityWeigher": float(env("SCHEDULER_SOFT_ANTI_AFFINITY_WEIGHT_MULTIPLIER", "1.0")),
        "BuildFailureWeigher": float(env("SCHEDULER_BUILD_FAILURE_WEIGHT_MULTIPLIER", "1000000.0")),
    },
    "HOST_SUBSET_SIZE": env_int("SCHEDULER_HOST_SUBSET_SIZE", 1),
    "MAX_INSTANCES_PER_HOST": env_int("SCHEDULER_MAX_INSTANCES_PER_HOST", 50),
    "MAX_ATTEMPTS": env_int("SCHEDULER_MAX_ATTEMPTS", 3),  # builds of one instance, the first included
    "CLAIM_RETRIES": env_int("SCHEDULER_CLAIM_RETRIES", 20),  # fresh decisions after a lost race for a host
    "SERVICE_DOWN_TIME": env_int("SERVICE_DOWN_TIME", 60),
    "CPU_ALLOCATION_RATIO": float(env("CPU_ALLOCATION_RATIO", "4.0")),
    "RAM_ALLOCATION_RATIO": float(env("RAM_ALLOCATION_RATIO", "1.0")),
    "DISK_ALLOCATION_RATIO": float(env("DISK_ALLOCATION_RATIO", "1.0")),
    "RESERVED_HOST_MEMORY_MB": env_int("RESERVED_HOST_MEMORY_MB", 0),
    "MAX_ALTERNATES": env_int("SCHEDULER_MAX_ALTERNATES", 2),
    # Seconds a conductor process decides on the hosts' rows (capacity, liveness, aggregates) it read
    # before, instead of reading every host for every decision; usage is always read fresh, and a claim
    # re-checks the chosen hosts under their row locks. 0 reads every host for every decision.
    "HOST_STATE_MAX_AGE": float(env("SCHEDULER_HOST_STATE_MAX_AGE", "3")),
}

CONSOLE = {
    "TOKEN_TTL": env_int("CONSOLE_TOKEN_TTL", 600),
    "PROXY_BASE_URL": env("CONSOLE_PROXY_BASE_URL", "http://127.0.0.1:6080/vnc_lite.html"),
    "AUTH_SECRET": required_secret("CONSOLEAUTH_SECRET"),
    # A console session whose proxy has not checked in for this long is taken as lost (proxy gone).
    "SESSION_STALE_AFTER": env_int("CONSOLE_SESSION_STALE_AFTER", 30),
}

# Keystone identity (docs/identity.md): off unless KEYSTONE_AUTH_URL is set; then the service credentials
# below validate users' tokens and register the catalog.
KEYSTONE = {
    "AUTH_URL": (env("KEYSTONE_AUTH_URL", "") or "").rstrip("/"),
    "USERNAME": env("KEYSTONE_USERNAME", ""),
    "PASSWORD": env("KEYSTONE_PASSWORD", ""),
    "PROJECT_NAME": env("KEYSTONE_PROJECT_NAME", ""),
    "USER_DOMAIN_NAME": env("KEYSTONE_USER_DOMAIN_NAME", "Default"),
    "PROJECT_DOMAIN_NAME": env("KEYSTONE_PROJECT_DOMAIN_NAME", "Default"),
    # The domain of the users who sign in to the portal.
    "LOGIN_DOMAIN_NAME": env("KEYSTONE_LOGIN_DOMAIN_NAME", "Default"),
    # The catalog region register_catalog puts the endpoints in.
    "REGION_NAME": env("KEYSTONE_REGION_NAME", "RegionOne"),
    "TIMEOUT": env_int("KEYSTONE_TIMEOUT", 10),
    # Validated tokens are cached until they expire, but no longer than this (bounds how long a revoked
    # token keeps working), in at most this many entries.
    "TOKEN_CACHE_TTL": env_int("KEYSTONE_TOKEN_CACHE_TTL", 300),
    "TOKEN_CACHE_SIZE": env_int("KEYSTONE_TOKEN_CACHE_SIZE", 10000),
}
if KEYSTONE["AUTH_URL"]:
    _missing = [f"KEYSTONE_{k}" for k in ("USERNAME", "PASSWORD", "PROJECT_NAME") if not KEYSTONE[k]]
    if _missing:
        raise ImproperlyConfigured(f"KEYSTONE_AUTH_URL is set, so {', '.join(_missing)} must be set too")

# The built-in identity API v3 (docs/identity.md), served at <CLOUD_PUBLIC_URL>/identity when KEYSTONE_AUTH_URL
# is not set: tokens for the cloud's own users, and the catalog the OpenStack clients read.
IDENTITY = {
    "TOKEN_TTL": env_int("IDENTITY_TOKEN_TTL", 3600),
    # A validated token is remembered in Django's cache (keyed by its SHA-256) for at most this long; revoking
    # it deletes the entry, which with a per-process cache reaches only the process that revoked it, so this
    # bounds how long a token revoked elsewhere keeps working. A shared cache (CACHE_URL) makes it immediate.
    "TOKEN_CACHE_TTL": env_int("IDENTITY_TOKEN_CACHE_TTL", 60),
    # The compute and image APIs keep a validated token's user, project and role in the process for this
    # long (docs/identity.md): a change to them reaches those APIs within it. 0 reads them every request.
    "PRINCIPAL_CACHE_TTL": env_int("IDENTITY_PRINCIPAL_CACHE_TTL", 10),
    "REGION_NAME": env("IDENTITY_REGION_NAME", "RegionOne"),
}

# Django's cache: per process unless CACHE_URL names a Redis (redis://host:port/db) shared by every API process.
_CACHE_URL = env("CACHE_URL", "")
CACHES = {
    "default": (
        {"BACKEND": "django.core.cache.backends.redis.RedisCache", "LOCATION": _CACHE_URL, "TIMEOUT": 300}
        if _CACHE_URL
        else {"BACKEND": "django.core.cache.backends.locmem.LocMemCache", "OPTIONS": {"MAX_ENTRIES": 20000}}
    )
}

# Block storage (docs/volumes.md): volumes come from a Cinder. With Keystone configured its endpoint is taken
# from the catalog (service type block-storage, or volumev3) and service tokens go with every request; without
# Keystone, CINDER_ENDPOINT names a Cinder in noauth mode (``auth_strategy = noauth_include_project_id``).
CINDER = {
    "ENDPOINT": (env("CINDER_ENDPOINT", "") or "").rstrip("/"),  # e.g. http://127.0.0.1:8776/v3
    "SERVICE_TYPE": env("CINDER_SERVICE_TYPE", "block-storage"),
    "INTERFACE": env("CINDER_INTERFACE", "public"),
    "TIMEOUT": env_int("CINDER_TIMEOUT", 30),
    # Seconds a new volume (boot from an image, or blank) may take to become available.
    "VOLUME_CREATE_TIMEOUT": env_int("CINDER_VOLUME_CREATE_TIMEOUT", 300),
    # Seconds an attach or detach may wait for its host before the volume sweep asks again.
    "VOLUME_LEASE": env_int("LEASE_VOLUME", 120),
}

# Password guessing (docs/operator.md): failed password checks, by HTTP Basic or the portal's sign-in form,
# allowed per user name and per client address (an IPv6 client's /64) within WINDOW seconds. Past either
# limit an attempt is refused (429) before any password hash is computed.
AUTH_THROTTLE = {
    "WINDOW": env_int("AUTH_THROTTLE_WINDOW", 300),
    "MAX_FAILURES_PER_USER": env_int("AUTH_THROTTLE_MAX_FAILURES_PER_USER", 10),
    "MAX_FAILURES_PER_ADDRESS": env_int("AUTH_THROTTLE_MAX_FAILURES_PER_ADDRESS", 50),
}

# The portal's live pages: server-sent events, one polling loop per open page.
PORTAL = {
    "LIVE_POLL_INTERVAL": float(env("PORTAL_LIVE_POLL_INTERVAL", "1.0")),
    # A stream ends after this many seconds and the browser reconnects, so no page holds a worker thread
    # for long and a restarted worker is picked up.
    "LIVE_STREAM_SECONDS": env_int("PORTAL_LIVE_STREAM_SECONDS", 30),
    # Streams one API process serves at once (keep it under gunicorn's --threads, 8 in the Procfile, so
    # threads stay free for the API); past it a page gets what changed and comes back in a few seconds.
    "LIVE_MAX_STREAMS": env_int("PORTAL_LIVE_MAX_STREAMS", 4),
}

LOGGING = {
    "version": 1,
    "disable_existing_loggers": False,
    "filters": {
        "redact_tokens": {"()": "portal.internal.logging.RedactConsoleTokens"},
        "request_id": {"()": "compute_tasks.request_ids.RequestIdFilter"},
    },
    "formatters": {"request": {"format": request_ids.LOG_FORMAT}},
    "handlers": {
        "console": {
            "class": "logging.StreamHandler",
            "filters": ["redact_tokens", "request_id"],
            "formatter": "request",
        },
    },
    "root": {"handlers": ["console"], "level": env("LOG_LEVEL", "INFO")},
    "loggers": {
        "django.request": {"handlers": ["console"], "level": "WARNING", "propagate": False},
        "django.server": {"handlers": ["console"], "level": "INFO", "propagate": False},
    },
}

if _MISSING_SECRETS:
    raise ImproperlyConfigured(
        f"{', '.join(_MISSING_SECRETS)} must be set in the environment (or CLOUD_DEBUG=1 for a development "
        f"machine, which generates them into {STATE_DIR / 'secrets'})"
    )
