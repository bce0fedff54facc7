"""One settings module for every deployment; only the environment differs.

Every setting is read from the environment (or a `.env` file in the project root). The
defaults are the *embedded* configuration a newcomer gets from `make run`: SQLite, a Celery
broker on the local filesystem, media on local disk and the tiny random-weight model, all
under `var/`. Production points the same variables at PostgreSQL, Redis, S3 and real models.
The full table of variables is in README.md.
"""

from __future__ import annotations

import secrets
from datetime import timedelta
from pathlib import Path

import environ

BASE_DIR = Path(__file__).resolve().parent.parent

env = environ.Env()
environ.Env.read_env(BASE_DIR / ".env", overwrite=False)

VAR_DIR = Path(env.str("VAR_DIR", default=str(BASE_DIR / "var")))
VAR_DIR.mkdir(parents=True, exist_ok=True)

# --- Core -----------------------------------------------------------------------------------

DEBUG = env.bool("DEBUG", default=False)


def _embedded_secret_key(path: Path) -> str:
    """A random key kept under var/ so a first run needs no configuration.

    Deployments must set SECRET_KEY in the environment: `workstation.checks` raises a
    deploy-check error when this fallback is in use.
    """
    if not path.exists():
        path.write_text(secrets.token_urlsafe(50))
        path.chmod(0o600)
    return path.read_text().strip()


SECRET_KEY = env.str("SECRET_KEY", default="")
SECRET_KEY_FROM_ENVIRONMENT = bool(SECRET_KEY)
if not SECRET_KEY:
    SECRET_KEY = _embedded_secret_key(VAR_DIR / "embedded-secret-key")

ALLOWED_HOSTS = env.list("ALLOWED_HOSTS", default=["localhost", "127.0.0.1", "[::1]"])
CSRF_TRUSTED_ORIGINS = env.list("CSRF_TRUSTED_ORIGINS", default=[])
# Public base URL, used in links printed by management commands (invitations).
SITE_URL = env.str("SITE_URL", default="http://127.0.0.1:8000").rstrip("/")

INSTALLED_APPS = [
    "django.contrib.admin",
    "django.contrib.auth",
    "django.contrib.contenttypes",
    "django.contrib.sessions",
    "django.contrib.messages",
    "whitenoise.runserver_nostatic",
    "django.contrib.staticfiles",
    "rest_framework",
    "drf_spectacular",
    "drf_spectacular_sidecar",
    "workstation.accounts",
    # Lowest layer first (docs/ARCHITECTURE.md): the queue, then the product apps.
    "jobs",
    "credits",
    "avatars",
    "templates_studio",
    "generations",
]

MIDDLEWARE = [
    "workstation.middleware.RequestIdMiddleware",
    "workstation.middleware.StudioContentSecurityPolicyMiddleware",
    "django.middleware.security.SecurityMiddleware",
    "whitenoise.middleware.WhiteNoiseMiddleware",
    "django.contrib.sessions.middleware.SessionMiddleware",
    "django.middleware.common.CommonMiddleware",
    "django.middleware.csrf.CsrfViewMiddleware",
    "django.contrib.auth.middleware.AuthenticationMiddleware",
    "django.contrib.messages.middleware.MessageMiddleware",
    "django.middleware.clickjacking.XFrameOptionsMiddleware",
]

ROOT_URLCONF = "workstation.urls"
WSGI_APPLICATION = "workstation.wsgi.application"  # manage.py runserver, the test live server
# What the Procfile serves (gunicorn with uvicorn workers): event streams wait without a thread.
ASGI_APPLICATION = "workstation.asgi.application"
AUTH_USER_MODEL = "accounts.User"
# Django's model backend behind the per-account sign-in lockout (accounts/lockout.py).
AUTHENTICATION_BACKENDS = ["workstation.accounts.backends.LockoutModelBackend"]
DEFAULT_AUTO_FIELD = "django.db.models.BigAutoField"

TEMPLATES = [
    {
        "BACKEND": "django.template.backends.django.DjangoTemplates",
        "DIRS": [],
        "APP_DIRS": True,
        "OPTIONS": {
            "context_processors": [
                "django.template.context_processors.request",
                "django.contrib.auth.context_processors.auth",
                "django.contrib.messages.context_processors.messages",
            ],
        },
    },
]

AUTH_PASSWORD_VALIDATORS = [
    {"NAME": "django.contrib.auth.password_validation.UserAttributeSimilarityValidator"},
    {
        "NAME": "django.contrib.auth.password_validation.MinimumLengthValidator",
        "OPTIONS": {"min_length": 10},
    },
    {"NAME": "django.contrib.auth.password_validation.CommonPasswordValidator"},
    {"NAME": "django.contrib.auth.password_validation.NumericPasswordValidator"},
]

LANGUAGE_CODE = "en-us"
TIME_ZONE = "UTC"
USE_I18N = True
USE_TZ = True

# --- Database ------------------------------------------------------------------------------

DATABASES = {
    "default": env.db_url("DATABASE_URL", default=f"sqlite:///{VAR_DIR / 'db.sqlite3'}"),
}
if DATABASES["default"]["ENGINE"] == "django.db.backends.sqlite3":
    # The web server and the worker write concurrently: WAL lets readers proceed, IMMEDIATE
    # transactions and a timeout make writers queue instead of failing with "locked".
    DATABASES["default"].setdefault("OPTIONS", {}).update(
        {"init_command": "PRAGMA journal_mode=WAL;", "transaction_mode": "IMMEDIATE", "timeout": 20}
    )
    # A file, not memory, so a worker subprocess can see the test database.
    DATABASES["default"]["TEST"] = {"NAME": str(VAR_DIR / "test-db.sqlite3")}
else:
    DATABASES["default"].setdefault("CONN_MAX_AGE", env.int("DB_CONN_MAX_AGE", default=60))
    DATABASES["default"]["CONN_HEALTH_CHECKS"] = True
    DATABASES["default"].setdefault("OPTIONS", {}).setdefault(
        "connect_timeout", env.int("DB_CONNECT_TIMEOUT", default=5)
    )

# --- Cache (throttles, short-lived state) ----------------------------------------------------

CACHES = {
    "default": env.cache_url("CACHE_URL", default=f"filecache://{VAR_DIR / 'cache'}"),
}

# --- Storage ---------------------------------------------------------------------------------

STORAGE_BACKEND = env.str("STORAGE_BACKEND", default="filesystem")  # filesystem | s3
MEDIA_ROOT = Path(env.str("MEDIA_ROOT", default=str(VAR_DIR / "media")))
MEDIA_URL = "/media/"  # never routed: every file is served through an owner-checking view


def s3_storage_options(
    *,
    bucket: str,
    endpoint_url: str | None = None,
    region: str | None = None,
    access_key: str | None = None,
    secret_key: str | None = None,
    prefix: str = "",
    server_side_encryption: str = "AES256",
    default_acl: str = "private",
) -> dict:
    """django-storages S3Storage options: private objects, no silent overwrites, encryption at
    rest. Also used by the tests that run against an S3-compatible server (tests/s3.py)."""
    return {
        "bucket_name": bucket,
        "endpoint_url": endpoint_url,
        "region_name": region,
        "access_key": access_key,
        "secret_key": secret_key,
        "location": prefix,
        # None sends no ACL at all: for buckets with ACLs disabled ("bucket owner enforced",
        # AWS's default since 2023), which refuse any request that sets one.
        "default_acl": default_acl or None,
        # A name already taken gets a random suffix: one object is never replaced by another.
        "file_overwrite": False,
        # Every file goes out through an owner-checking view (signed, OUTPUT_URL_TTL_S); should
        # anything ask the storage for a URL, it is a presigned one that expires.
        "querystring_auth": True,
        "querystring_expire": 300,
        "object_parameters": (
            {"ServerSideEncryption": server_side_encryption} if server_side_encryption else {}
        ),
    }


if STORAGE_BACKEND == "s3":
    _default_storage = {
        "BACKEND": "storages.backends.s3.S3Storage",
        "OPTIONS": s3_storage_options(
            bucket=env.str("S3_BUCKET"),
            endpoint_url=env.str("S3_ENDPOINT_URL", default=None),
            region=env.str("S3_REGION", default=None),
            access_key=env.str("S3_ACCESS_KEY_ID", default=None),
            secret_key=env.str("S3_SECRET_ACCESS_KEY", default=None),
            prefix=env.str("S3_PREFIX", default=""),
            # AES256 (SSE-S3) by default; "aws:kms" where the server has KMS; empty for an
            # S3-compatible server without server-side encryption.
            server_side_encryption=env.str("S3_SERVER_SIDE_ENCRYPTION", default="AES256"),
            default_acl=env.str("S3_DEFAULT_ACL", default="private"),
        ),
    }
elif STORAGE_BACKEND == "filesystem":
    _default_storage = {
        "BACKEND": "django.core.files.storage.FileSystemStorage",
        # No fixed location: the storage follows MEDIA_ROOT (tests point it at a temp dir).
        "OPTIONS": {"file_permissions_mode": 0o600, "directory_permissions_mode": 0o700},
    }
else:  # pragma: no cover - configuration error surfaced at start-up
    raise environ.ImproperlyConfigured(
        f"STORAGE_BACKEND must be 'filesystem' or 's3', not {STORAGE_BACKEND!r}"
    )

STATIC_URL = "/static/"
STATIC_ROOT = VAR_DIR / "static"  # collectstatic target in production
STATIC_ROOT.mkdir(parents=True, exist_ok=True)
FRONTEND_DIST = BASE_DIR / "frontend" / "dist"
STATICFILES_DIRS = [("studio", FRONTEND_DIST)] if FRONTEND_DIST.is_dir() else []
STORAGES = {
    "default": _default_storage,
    "staticfiles": {"BACKEND": "whitenoise.storage.CompressedStaticFilesStorage"},
}
# Serve straight from the frontend build too, so `make run` needs no collectstatic step.
WHITENOISE_USE_FINDERS = True

# --- Celery ----------------------------------------------------------------------------------

CELERY_BROKER_URL = env.str("CELERY_BROKER_URL", default="filesystem://localhost/")
_BROKER_DIR = VAR_DIR / "broker"
# The longest task's hard time limit; the broker's visibility timeout must exceed it or a
# long job would be redelivered while still running.
CELERY_TASK_TIME_LIMIT = env.int("CELERY_TASK_TIME_LIMIT", default=60 * 60)
CELERY_TASK_SOFT_TIME_LIMIT = env.int("CELERY_TASK_SOFT_TIME_LIMIT", default=55 * 60)
if CELERY_BROKER_URL.startswith("filesystem"):
    for _sub in ("queue", "processed", "control"):
        (_BROKER_DIR / _sub).mkdir(parents=True, exist_ok=True)
    CELERY_BROKER_TRANSPORT_OPTIONS = {
        "data_folder_in": str(_BROKER_DIR / "queue"),
        "data_folder_out": str(_BROKER_DIR / "queue"),
        "processed_folder": str(_BROKER_DIR / "processed"),
        # Exchange state (broadcast/pidbox bindings); kombu's default is ./control in the
        # current directory, which would litter the checkout.
        "control_folder": str(_BROKER_DIR / "control"),
        "store_processed": False,
    }
else:
    CELERY_BROKER_TRANSPORT_OPTIONS = {
        "visibility_timeout": CELERY_TASK_TIME_LIMIT + 15 * 60,
    }
CELERY_BROKER_CONNECTION_TIMEOUT = env.float("CELERY_BROKER_CONNECTION_TIMEOUT", default=4.0)
CELERY_TASK_ALWAYS_EAGER = False

# --- Engine ----------------------------------------------------------------------------------

ENGINE_PROFILE = env.str("ENGINE_PROFILE", default="tiny")
ENGINE_MODELS_DIR = Path(env.str("ENGINE_MODELS_DIR", default=str(VAR_DIR / "models")))
ENGINE_CONFIG_FILE = env.str("ENGINE_CONFIG_FILE", default="") or None
ENGINE_DEVICE = env.str("ENGINE_DEVICE", default="auto")  # auto | cpu | cuda | cuda:N
ENGINE_DTYPE = env.str("ENGINE_DTYPE", default="") or None  # float32 | float16 | bfloat16
# Torch CPU threads per process (0 = torch's default). Outputs are byte-identical only for the
# same thread count; tests use 1 so parallel processes do not oversubscribe the cores.
ENGINE_TORCH_THREADS = env.int("ENGINE_TORCH_THREADS", default=0)
# Bumped when a change to the engine changes pixels: preview cells are cached per version.
ENGINE_VERSION = env.str("ENGINE_VERSION", default=f"{ENGINE_PROFILE}-1")
# Output labels (GB 45438-2025, EU AI Act Art. 50).
LABEL_TEXT = env.str("LABEL_TEXT", default="AI生成")
LABEL_PRODUCER = env.str("LABEL_PRODUCER", default="Portrait Template Workstation")
# Templates: the shorter side of a template's size when it gives an aspect ratio.
TEMPLATE_BASE_SIZE = env.int("TEMPLATE_BASE_SIZE", default=64 if ENGINE_PROFILE == "tiny" else 512)
# Workers load the default model when they start, so the first job does not pay for it.
ENGINE_WARM_ON_START = env.bool("ENGINE_WARM_ON_START", default=True)

# --- Personal data: encryption, intake, retention -----------------------------------------------


def _embedded_master_keys(path: Path) -> str:
    """Like the embedded SECRET_KEY: a local-only fallback, refused by `check --deploy`."""
    if not path.exists():
        import base64
        import os

        path.write_text("local:" + base64.urlsafe_b64encode(os.urandom(32)).decode().rstrip("="))
        path.chmod(0o600)
    return path.read_text().strip()


# `id:base64key[,older_id:base64key...]`: the first wraps new data keys; older ones still
# unwrap until `manage.py rotate_master_key` has re-wrapped everything.
DATA_MASTER_KEYS = env.str("DATA_MASTER_KEYS", default="")
DATA_MASTER_KEYS_FROM_ENVIRONMENT = bool(DATA_MASTER_KEYS)
if not DATA_MASTER_KEYS:
    DATA_MASTER_KEYS = _embedded_master_keys(VAR_DIR / "embedded-master-keys")

AVATAR_MIN_PHOTOS = env.int("AVATAR_MIN_PHOTOS", default=20)
AVATAR_MAX_PHOTOS = env.int("AVATAR_MAX_PHOTOS", default=40)
AVATAR_KEEP_PHOTOS = env.int("AVATAR_KEEP_PHOTOS", default=15)
AVATAR_MIN_USABLE_PHOTOS = env.int("AVATAR_MIN_USABLE_PHOTOS", default=10)
AVATAR_PHOTO_MAX_BYTES = env.int("AVATAR_PHOTO_MAX_BYTES", default=10 * 1024 * 1024)
AVATAR_MIN_FACE_PX = env.int("AVATAR_MIN_FACE_PX", default=128)
# Pixel budgets, checked from the image headers before anything is decoded: per photo (one 50 Mpx
# full-resolution phone photo fits) and per upload request (every photo plus the front one:
# 40 standard 12 Mpx photos fit; 20 full-resolution 48 Mpx ones do not, and the 400 says so).
AVATAR_PHOTO_MAX_PIXELS = env.int("AVATAR_PHOTO_MAX_PIXELS", default=50_000_000)
AVATAR_UPLOAD_MAX_PIXELS = env.int("AVATAR_UPLOAD_MAX_PIXELS", default=600_000_000)
# Photos are decoded for screening at no more than about this side (JPEG draft mode).
AVATAR_DECODE_SIDE = env.int("AVATAR_DECODE_SIDE", default=2048)
# A designer's control or reference image (stored at most 2048 px on its long side).
ASSET_MAX_PIXELS = env.int("ASSET_MAX_PIXELS", default=4096 * 4096)
AVATAR_MAX_IN_FLIGHT = env.int("AVATAR_MAX_IN_FLIGHT", default=2)
AVATAR_RETENTION_DAYS = env.int("AVATAR_RETENTION_DAYS", default=30)
AVATAR_DELETION_NOTICE_DAYS = env.int("AVATAR_DELETION_NOTICE_DAYS", default=3)
PHOTO_HARD_LIMIT_HOURS = env.int("PHOTO_HARD_LIMIT_HOURS", default=24)
_tiny = ENGINE_PROFILE == "tiny"
# The instant tier (issue #15): an identity embedding for the tuning-free identity adapter,
# made by the intake job right after the photo checks. Off, or without an identity adapter in
# the registry, every avatar trains its LoRA.
AVATAR_INSTANT_TIER = env.bool("AVATAR_INSTANT_TIER", default=True)
AVATAR_TRAINING_STEPS = env.int("AVATAR_TRAINING_STEPS", default=20 if _tiny else 400)
AVATAR_TRAINING_RESOLUTION = env.int("AVATAR_TRAINING_RESOLUTION", default=64 if _tiny else 512)
AVATAR_TRAINING_RANK = env.int("AVATAR_TRAINING_RANK", default=4)
AVATAR_TRAINING_TIME_BUDGET_S = env.float("AVATAR_TRAINING_TIME_BUDGET_S", default=900.0)
# Content safety on uploads and outputs: "none", or "diffusers:<path or hub id>" for the
# diffusers StableDiffusionSafetyChecker. "none" is reported by health and the admin.
CONTENT_SAFETY_CHECKER = env.str("CONTENT_SAFETY_CHECKER", default="none")
# Uploads: 40 photos of up to 10 MB each stream to temporary files, not memory.
DATA_UPLOAD_MAX_NUMBER_FILES = AVATAR_MAX_PHOTOS + 2
FILE_UPLOAD_MAX_MEMORY_SIZE = 2 * 1024 * 1024

# --- The queue of record -----------------------------------------------------------------------
JOB_LEASE_S = env.float("JOB_LEASE_S", default=60.0)
JOB_MAX_ATTEMPTS = env.int("JOB_MAX_ATTEMPTS", default=3)
TOKEN_RESEND_S = env.float("TOKEN_RESEND_S", default=30.0)
WORKER_LIVE_S = env.float("WORKER_LIVE_S", default=120.0)
SWEEP_INTERVAL_S = env.float("SWEEP_INTERVAL_S", default=5.0)
# A running worker writes its heartbeat this often; one silent for WORKER_DEAD_AFTER_S is
# dead, and the sweeper returns its jobs to the queue at once (not only when the lease ends).
WORKER_HEARTBEAT_S = env.float("WORKER_HEARTBEAT_S", default=2.0)
WORKER_DEAD_AFTER_S = env.float("WORKER_DEAD_AFTER_S", default=8.0)
# Queue positions and ETAs come from a per-lane snapshot rebuilt at most this often (and shared
# through the cache): 0 rebuilds it on every read (tests).
QUEUE_POSITION_TICK_S = env.float("QUEUE_POSITION_TICK_S", default=1.0)
# Webhook URLs on localhost/127.0.0.1 (plain http) are for development only.
WEBHOOK_ALLOW_LOCAL = env.bool("WEBHOOK_ALLOW_LOCAL", default=DEBUG)
# Ports a webhook URL may name (HTTPS); anything else (6379, 22, ...) is refused at registration.
WEBHOOK_ALLOWED_PORTS = [int(p) for p in env.list("WEBHOOK_ALLOWED_PORTS", default=["443"])]
# /metrics: if set, scrapers must send `Authorization: Bearer <token>`.
METRICS_TOKEN = env.str("METRICS_TOKEN", default="")
# Signed output links live this long (seconds); outputs are visible only to their owner.
OUTPUT_URL_TTL_S = env.int("OUTPUT_URL_TTL_S", default=300)
# Server-sent event streams end after this long; clients reconnect (the stream says so).
SSE_MAX_SECONDS = env.float("SSE_MAX_SECONDS", default=55.0)


def _default_notify_url() -> str:
    """The Redis already configured for the cache or the broker, else in-process."""
    for url in (env.str("CACHE_URL", default=""), CELERY_BROKER_URL):
        if url.startswith(("redis://", "rediss://")):
            return url
    return "local"


# Event streams wait for notifications (workstation/pubsub.py): Redis pub/sub, or "local"
# (in-process: the embedded default, where the worker's changes are seen by polling).
NOTIFY_URL = env.str("NOTIFY_URL", default=_default_notify_url())
# A waiting stream re-reads its row this often even without a notification (0: never). On by
# default only with the in-process notifier, which cannot hear the worker process.
_NOTIFY_BY_REDIS = NOTIFY_URL.startswith(("redis://", "rediss://", "unix://"))
SSE_POLL_S = env.float("SSE_POLL_S", default=0.0 if _NOTIFY_BY_REDIS else 1.0)
# Threads per web process that run event-stream requests' synchronous parts (opening a stream:
# authentication, scoping, its reads); waiting streams hold none.
SSE_THREADS = env.int("SSE_THREADS", default=4)
# A stream sends a change of queue position alone at most this often (status and progress at
# once; reaching the front at once): when the queue moves, every watcher's position moves.
SSE_POSITION_EVERY_S = env.float("SSE_POSITION_EVERY_S", default=5.0)
# Generations included with each trained avatar; beyond this each costs a generation credit.
AVATAR_GENERATION_ALLOWANCE = env.int("AVATAR_GENERATION_ALLOWANCE", default=50)
# Credits are required for training and extra generations (partners grant them).
ENTITLEMENTS_ENFORCED = env.bool("ENTITLEMENTS_ENFORCED", default=True)
# A render worker claims up to this many compatible jobs into one forward pass (1 = off).
RENDER_BATCH_LIMIT = env.int("RENDER_BATCH_LIMIT", default=4)
# A render worker claims its next job while at most this many rendered jobs are still being
# finished (post-processed, stored) in the background; 0 finishes each job before the next.
WORKER_PIPELINE_DEPTH = env.int("WORKER_PIPELINE_DEPTH", default=1)
# A job whose images are not post-processed within this many seconds fails (refunded).
ENGINE_POSTPROCESS_TIMEOUT_S = env.float("ENGINE_POSTPROCESS_TIMEOUT_S", default=300.0)
# Before enough history exists, ETAs use these per-kind guesses (seconds).
JOB_DEFAULT_SECONDS = {
    "generation": 8.0,
    "refinement": 8.0,
    "preview": 3.0,
    "test_render": 2.0,
    "training": 60.0,
    "avatar_intake": 3.0,
}

CELERY_BEAT_SCHEDULE = {
    "retention-sweep": {
        "task": "avatars.tasks.maintenance_retention_sweep",
        "schedule": env.int("RETENTION_SWEEP_INTERVAL_S", default=15 * 60),
    },
    "queue-sweep": {
        "task": "jobs.tasks.maintenance_sweep",
        "schedule": SWEEP_INTERVAL_S,
    },
    # The turn index's safety net (jobs.turns.reconcile): one grouped read of the queue.
    "queue-turns-reconcile": {
        "task": "jobs.tasks.maintenance_reconcile_turns",
        "schedule": env.float("QUEUE_RECONCILE_INTERVAL_S", default=60.0),
    },
    "webhooks-sweep": {
        "task": "generations.tasks.maintenance_webhooks_sweep",
        "schedule": 60,
        "options": {"queue": "maintenance"},
    },
}

# --- API -------------------------------------------------------------------------------------

TRUSTED_PROXY_COUNT = env.int("TRUSTED_PROXY_COUNT", default=0)
# Per-account sign-in lockout (workstation/accounts/lockout.py), whatever the address.
LOGIN_LOCK_AFTER_FAILURES = env.int("LOGIN_LOCK_AFTER_FAILURES", default=5)
LOGIN_LOCK_BASE_S = env.int("LOGIN_LOCK_BASE_S", default=30)
LOGIN_LOCK_MAX_S = env.int("LOGIN_LOCK_MAX_S", default=15 * 60)

REST_FRAMEWORK = {
    # Bearer first: its WWW-Authenticate header turns "no credentials" into a 401.
    "DEFAULT_AUTHENTICATION_CLASSES": [
        "workstation.api.authentication.ApiClientAuthentication",
        "workstation.api.authentication.StudioSessionAuthentication",
    ],
    "DEFAULT_PERMISSION_CLASSES": ["rest_framework.permissions.IsAuthenticated"],
    "DEFAULT_RENDERER_CLASSES": ["rest_framework.renderers.JSONRenderer"],
    "DEFAULT_PARSER_CLASSES": [
        "rest_framework.parsers.JSONParser",
        "rest_framework.parsers.MultiPartParser",
        "rest_framework.parsers.FormParser",
    ],
    "DEFAULT_PAGINATION_CLASS": "workstation.api.pagination.StandardPagination",
    "PAGE_SIZE": 20,
    "EXCEPTION_HANDLER": "workstation.api.errors.api_exception_handler",
    "DEFAULT_METADATA_CLASS": "workstation.api.metadata.SchemaPointerMetadata",
    "DEFAULT_SCHEMA_CLASS": "workstation.api.schema.WorkstationAutoSchema",
    "DEFAULT_THROTTLE_CLASSES": [
        "workstation.api.throttles.PrincipalRateThrottle",
        "rest_framework.throttling.AnonRateThrottle",
    ],
    "DEFAULT_THROTTLE_RATES": {
        "principal": env.str("THROTTLE_RATE_PRINCIPAL", default="600/min"),
        "anon": env.str("THROTTLE_RATE_ANON", default="60/min"),
        "login": env.str("THROTTLE_RATE_LOGIN", default="10/min"),
    },
    "UNAUTHENTICATED_USER": "django.contrib.auth.models.AnonymousUser",
    # Throttles key on the client address. X-Forwarded-For is trusted only for as many proxies
    # as TRUSTED_PROXY_COUNT says sit in front (0: use REMOTE_ADDR, ignore the header), so a
    # caller cannot pick a fresh "address" per request.
    "NUM_PROXIES": TRUSTED_PROXY_COUNT,
}

SPECTACULAR_SETTINGS = {
    "TITLE": "Portrait Template Workstation API",
    "DESCRIPTION": "Consumer, studio and operations API. Errors use one format: see docs/API.md.",
    "VERSION": "1.0.0",
    "SERVE_INCLUDE_SCHEMA": False,
    "SCHEMA_PATH_PREFIX": r"/api/(v1|studio)",
    "COMPONENT_SPLIT_REQUEST": True,
    "ENUM_NAME_OVERRIDES": {
        "RenderJobStatusEnum": "jobs.models.JobStatus",
        "AvatarStatusEnum": "avatars.models.AvatarStatus",
        "LoraStatusEnum": "avatars.models.LoraStatus",
        "IdentityEnum": "avatars.models.Identity",
    },
    # Swagger UI assets ship with the package: the docs page works offline.
    "SWAGGER_UI_DIST": "SIDECAR",
    "SWAGGER_UI_FAVICON_HREF": "SIDECAR",
    "REDOC_DIST": "SIDECAR",
}

INVITATION_TTL = timedelta(hours=env.int("INVITATION_TTL_HOURS", default=72))

# --- Security --------------------------------------------------------------------------------

SESSION_COOKIE_HTTPONLY = True
SESSION_COOKIE_SAMESITE = "Lax"
CSRF_COOKIE_SAMESITE = "Lax"
SECURE_CONTENT_TYPE_NOSNIFF = True
X_FRAME_OPTIONS = "DENY"
SECURE_REFERRER_POLICY = "same-origin"
# Behind TLS (production) these must be on; `manage.py check --deploy` enforces it.
SECURE_SSL_REDIRECT = env.bool("SECURE_SSL_REDIRECT", default=False)
SESSION_COOKIE_SECURE = env.bool("SESSION_COOKIE_SECURE", default=False)
CSRF_COOKIE_SECURE = env.bool("CSRF_COOKIE_SECURE", default=False)
SECURE_HSTS_SECONDS = env.int("SECURE_HSTS_SECONDS", default=0)
SECURE_HSTS_INCLUDE_SUBDOMAINS = env.bool("SECURE_HSTS_INCLUDE_SUBDOMAINS", default=False)
SECURE_HSTS_PRELOAD = env.bool("SECURE_HSTS_PRELOAD", default=False)
if env.bool("USE_X_FORWARDED_PROTO", default=False):
    SECURE_PROXY_SSL_HEADER = ("HTTP_X_FORWARDED_PROTO", "https")
DATA_UPLOAD_MAX_MEMORY_SIZE = env.int("DATA_UPLOAD_MAX_MEMORY_SIZE", default=10 * 1024 * 1024)

# --- Logging ---------------------------------------------------------------------------------
# Logs carry ids and states only: never photos, prompts of consumers, keys or face data.

LOG_LEVEL = env.str("LOG_LEVEL", default="INFO")
LOGGING = {
    "version": 1,
    "disable_existing_loggers": False,
    "formatters": {
        "plain": {"format": "%(asctime)s %(levelname)s %(name)s %(message)s"},
    },
    "filters": {"signed_links": {"()": "workstation.log_redaction.RedactSignedLinks"}},
    "handlers": {
        "console": {
            "class": "logging.StreamHandler",
            "formatter": "plain",
            "filters": ["signed_links"],
        }
    },
    "root": {"handlers": ["console"], "level": LOG_LEVEL},
    "loggers": {
        "django.db.backends": {"level": "WARNING"},
        "PIL": {"level": "WARNING"},
    },
}
