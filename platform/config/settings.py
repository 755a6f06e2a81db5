"""Settings for the Merchant DMP. Values come from the environment only (see env.py).

With no environment at all the platform runs embedded: SQLite and Celery tasks
executed eagerly in-process. DATABASE_URL switches to PostgreSQL (psycopg 3)
and CELERY_BROKER_URL to a real broker (Redis). DMP_ENV=production turns on
the deployment checks and refuses to start without its secrets.
"""

from __future__ import annotations

from pathlib import Path

import dj_database_url
from django.core.exceptions import ImproperlyConfigured

from .env import env_bool, env_float, env_int, env_list, env_required, env_str, env_text

BASE_DIR = Path(__file__).resolve().parent.parent.parent  # repository root
VAR_DIR = Path(env_str("DMP_VAR_DIR", str(BASE_DIR / "var")))

DMP_ENV = env_str("DMP_ENV", "development")
if DMP_ENV not in {"development", "test", "production"}:
    raise ImproperlyConfigured(f"DMP_ENV must be development, test or production, got {DMP_ENV!r}")
PRODUCTION = DMP_ENV == "production"

DEBUG = env_bool("DEBUG", default=not PRODUCTION)
if PRODUCTION and DEBUG:
    raise ImproperlyConfigured("DEBUG must be off when DMP_ENV=production")

SECRET_KEY = env_required("SECRET_KEY", production=PRODUCTION, dev_default="dev-only-insecure-secret-key-change-me")
# Keyed pseudonyms: HMAC-SHA256(PSEUDONYM_KEY, normalised identifier).
PSEUDONYM_KEY = env_required("PSEUDONYM_KEY", production=PRODUCTION, dev_default="dev-only-pseudonym-key")
# The audit log's hash chain: HMAC(AUDIT_KEY, previous hash + canonical entry).
AUDIT_KEY = env_required("AUDIT_KEY", production=PRODUCTION, dev_default="dev-only-audit-key")
if PRODUCTION:
    for _name, _value in (
        ("SECRET_KEY", SECRET_KEY),
        ("PSEUDONYM_KEY", PSEUDONYM_KEY),
        ("AUDIT_KEY", AUDIT_KEY),
    ):
        if len(_value) < 32:
            raise ImproperlyConfigured(f"{_name} must be at least 32 characters in production")

ALLOWED_HOSTS = env_list("ALLOWED_HOSTS", default=[] if PRODUCTION else ["127.0.0.1", "localhost", "testserver"])
if PRODUCTION and not ALLOWED_HOSTS:
    raise ImproperlyConfigured("ALLOWED_HOSTS must be set when DMP_ENV=production")
CSRF_TRUSTED_ORIGINS = env_list("CSRF_TRUSTED_ORIGINS")

INSTALLED_APPS = [
    "django.contrib.admin",
    "django.contrib.auth",
    "django.contrib.contenttypes",
    "django.contrib.sessions",
    "django.contrib.messages",
    "django.contrib.staticfiles",
    "rest_framework",
    "drf_spectacular",
    "drf_spectacular_sidecar",
    "django_celery_beat",
    # Layer 1
    "merchants",
    "privacy",
    # Layer 2
    "consumers",
    # Layer 3
    "tags",
    # Layer 4
    "recommend",
    "predict",
    # Layer 5
    "segments",
    # Layer 6
    "campaigns",
    "journeys",
    # Layer 7
    "portal",
]

MIDDLEWARE = [
    "django.middleware.security.SecurityMiddleware",
    "whitenoise.middleware.WhiteNoiseMiddleware",
    "django.contrib.sessions.middleware.SessionMiddleware",
    "config.middleware.ApiTrailingSlashMiddleware",  # before CommonMiddleware: no APPEND_SLASH redirect for the API
    "django.middleware.common.CommonMiddleware",
    "django.middleware.csrf.CsrfViewMiddleware",
    "django.contrib.auth.middleware.AuthenticationMiddleware",
    "django.contrib.messages.middleware.MessageMiddleware",
    "django.middleware.clickjacking.XFrameOptionsMiddleware",
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
            ],
        },
    },
]

# Database: SQLite unless DATABASE_URL names another (PostgreSQL in production).
DATABASE_URL = env_str("DATABASE_URL")
if DATABASE_URL:
    DATABASES = {"default": dj_database_url.parse(DATABASE_URL, conn_max_age=env_int("DB_CONN_MAX_AGE", 60))}
    if PRODUCTION and DATABASES["default"]["ENGINE"] != "django.db.backends.postgresql":
        raise ImproperlyConfigured("production runs on PostgreSQL: DATABASE_URL must be postgres://...")
elif PRODUCTION:
    raise ImproperlyConfigured("DATABASE_URL must be set when DMP_ENV=production")
else:
    SQLITE_PATH = Path(env_str("SQLITE_PATH", str(VAR_DIR / "dmp.sqlite3")))
    # var/ is not in git: a fresh clone has none, and SQLite cannot create the directory of its file.
    SQLITE_PATH.parent.mkdir(parents=True, exist_ok=True)
    DATABASES = {
        "default": {
            "ENGINE": "django.db.backends.sqlite3",
            "NAME": str(SQLITE_PATH),
            "OPTIONS": {"timeout": 30, "transaction_mode": "IMMEDIATE"},
        }
    }
DEFAULT_AUTO_FIELD = "django.db.models.BigAutoField"

AUTH_PASSWORD_VALIDATORS = [
    {"NAME": "django.contrib.auth.password_validation.UserAttributeSimilarityValidator"},
    {"NAME": "django.contrib.auth.password_validation.MinimumLengthValidator"},
    {"NAME": "django.contrib.auth.password_validation.CommonPasswordValidator"},
    {"NAME": "django.contrib.auth.password_validation.NumericPasswordValidator"},
]
LOGIN_URL = "portal:login"
# A JSON view the portal's scripts fetch answers a CSRF failure in JSON too (portal.access.merchant_view(json=True)).
CSRF_FAILURE_VIEW = "portal.views.refusals.csrf_failure"
LOGIN_REDIRECT_URL = "portal:dashboard"
LOGOUT_REDIRECT_URL = "portal:login"

LANGUAGE_CODE = "en-gb"
TIME_ZONE = "UTC"
USE_I18N = True
USE_TZ = True

STATIC_URL = "static/"
STATIC_ROOT = Path(env_str("STATIC_ROOT", str(BASE_DIR / "staticfiles")))
MEDIA_ROOT = Path(env_str("MEDIA_ROOT", str(VAR_DIR / "media")))
MEDIA_URL = "media/"
STORAGES = {
    "default": {"BACKEND": "django.core.files.storage.FileSystemStorage"},
    "staticfiles": {
        "BACKEND": "whitenoise.storage.CompressedManifestStaticFilesStorage"
        if PRODUCTION
        else "django.contrib.staticfiles.storage.StaticFilesStorage"
    },
}

# Caches: Redis where configured (shared by web and workers), local memory otherwise.
REDIS_URL = env_str("REDIS_URL")
if PRODUCTION and not REDIS_URL:
    # API rate limits count in the cache: a local-memory cache counts per process, so every gunicorn and Celery
    # process would grant the full rate again.
    raise ImproperlyConfigured(
        "REDIS_URL must be set when DMP_ENV=production: rate limits and caches must be shared by all processes"
    )
if REDIS_URL:
    CACHES = {"default": {"BACKEND": "django.core.cache.backends.redis.RedisCache", "LOCATION": REDIS_URL}}
else:
    CACHES = {"default": {"BACKEND": "django.core.cache.backends.locmem.LocMemCache"}}

# Security: strict in production, checked by `manage.py check --deploy`.
SECURE_PROXY_SSL_HEADER = ("HTTP_X_FORWARDED_PROTO", "https")
SESSION_COOKIE_HTTPONLY = True
X_FRAME_OPTIONS = "DENY"
SECURE_CONTENT_TYPE_NOSNIFF = True
if PRODUCTION:
    SECURE_SSL_REDIRECT = env_bool("SECURE_SSL_REDIRECT", default=True)
    SESSION_COOKIE_SECURE = True
    CSRF_COOKIE_SECURE = True
    SECURE_HSTS_SECONDS = env_int("SECURE_HSTS_SECONDS", 31536000)
    SECURE_HSTS_INCLUDE_SUBDOMAINS = True
    SECURE_HSTS_PRELOAD = True

# REST API
REST_FRAMEWORK = {
    "DEFAULT_AUTHENTICATION_CLASSES": ["merchants.auth.BearerKeyAuthentication"],
    "DEFAULT_PERMISSION_CLASSES": ["merchants.permissions.IsMerchantKey"],
    "DEFAULT_SCHEMA_CLASS": "drf_spectacular.openapi.AutoSchema",
    "DEFAULT_THROTTLE_CLASSES": ["merchants.throttling.ApiKeyRateThrottle"],
    "DEFAULT_THROTTLE_RATES": {
        "api_key": env_str("API_THROTTLE_RATE", "6000/min"),
        # Requests with no key or a bad key, per client address (merchants.throttling.AnonymousRateThrottle).
        "anon": env_str("API_ANON_THROTTLE_RATE", "60/min"),
    },
    # Proxies in front of the app whose X-Forwarded-For entries are trusted for the client address; unset: none,
    # the address is REMOTE_ADDR.
    "NUM_PROXIES": env_int("API_NUM_PROXIES", 0) or None,
    "DEFAULT_PAGINATION_CLASS": "merchants.pagination.BoundedLimitOffsetPagination",
    "DEFAULT_PARSER_CLASSES": [
        "merchants.parsers.SafeJSONParser",
        "rest_framework.parsers.FormParser",
        "rest_framework.parsers.MultiPartParser",
    ],
    "PAGE_SIZE": 100,
    "EXCEPTION_HANDLER": "merchants.api_errors.exception_handler",
    "UNAUTHENTICATED_USER": None,
}
SPECTACULAR_SETTINGS = {
    "TITLE": "Merchant DMP API",
    "DESCRIPTION": "Audience segmentation, recommendations and consent-gated campaigns. "
    "Send API keys as `Authorization: Bearer <key>`.",
    "VERSION": "1.0.0",
    "SERVE_INCLUDE_SCHEMA": False,
    "SWAGGER_UI_DIST": "SIDECAR",
    "SWAGGER_UI_FAVICON_HREF": "SIDECAR",
    "REDOC_DIST": "SIDECAR",
    "COMPONENT_SPLIT_REQUEST": True,
}

# Celery: eager in-process unless a broker is configured.
CELERY_BROKER_URL = env_str("CELERY_BROKER_URL")
CELERY_TASK_ALWAYS_EAGER = CELERY_BROKER_URL is None
CELERY_TASK_EAGER_PROPAGATES = True
CELERY_RESULT_BACKEND = env_str("CELERY_RESULT_BACKEND")
CELERY_TASK_ACKS_LATE = True  # a killed worker's task is redelivered, never lost
CELERY_TASK_REJECT_ON_WORKER_LOST = True
CELERY_WORKER_PREFETCH_MULTIPLIER = 1
CELERY_TASK_TIME_LIMIT = env_int("CELERY_TASK_TIME_LIMIT", 3600)
CELERY_TASK_SOFT_TIME_LIMIT = env_int("CELERY_TASK_SOFT_TIME_LIMIT", 3300)
CELERY_BEAT_SCHEDULER = "django_celery_beat.schedulers:DatabaseScheduler"
CELERY_TIMEZONE = TIME_ZONE
CELERY_BROKER_TRANSPORT_OPTIONS = {"visibility_timeout": 4 * 3600}

# Product settings
MIN_AUDIENCE = env_int("MIN_AUDIENCE", 100)
INGEST_BATCH_SIZE = env_int("INGEST_BATCH_SIZE", 20000)
EVENT_RETENTION_DAYS = env_int("EVENT_RETENTION_DAYS", 400)
PLATFORM_FREQUENCY_CAP = env_int("PLATFORM_FREQUENCY_CAP", 3)  # messages per consumer per window, all merchants
PLATFORM_FREQUENCY_WINDOW_DAYS = env_int("PLATFORM_FREQUENCY_WINDOW_DAYS", 7)
CAMPAIGN_BATCH_SIZE = env_int("CAMPAIGN_BATCH_SIZE", 10000)  # consumers per activation batch (write, dispatch)
# Journeys (docs/journeys.md): the platform's quiet hours "HH:MM-HH:MM" in JOURNEY_TIME_ZONE (empty: none; merchants
# and journeys may add their own), due enrolments per step task, the most a tick claims, how long a claimed step
# waits before it is re-claimed, and how far back each tick re-reads trigger rows committed out of id order.
JOURNEY_TIME_ZONE = env_str("JOURNEY_TIME_ZONE", "Asia/Singapore")
# Set but empty means no quiet hours (as documented), not the default: env_str would read "" as unset.
JOURNEY_QUIET_HOURS = env_text("JOURNEY_QUIET_HOURS", "21:00-08:00")
JOURNEY_BATCH_SIZE = env_int("JOURNEY_BATCH_SIZE", 500)
JOURNEY_TICK_MAX_STEPS = env_int("JOURNEY_TICK_MAX_STEPS", 20000)
JOURNEY_STEP_LEASE_S = env_int("JOURNEY_STEP_LEASE_S", 300)
JOURNEY_WAIT_POLL_S = env_int("JOURNEY_WAIT_POLL_S", 300)
JOURNEY_TRIGGER_REREAD_SECONDS = env_int("JOURNEY_TRIGGER_REREAD_SECONDS", 600)
# Seconds from an ingested batch to the tick that reads it, when an event-triggered journey is active (0: beat only).
JOURNEY_EVENT_TICK_S = env_int("JOURNEY_EVENT_TICK_S", 1)
OPERATOR_WEBHOOK_URL = env_str("OPERATOR_WEBHOOK_URL")
OPERATOR_WEBHOOK_SECRET = env_required(
    "OPERATOR_WEBHOOK_SECRET",
    production=PRODUCTION and bool(OPERATOR_WEBHOOK_URL),
    dev_default="dev-webhook-secret",
)
INGEST_WRITERS = env_int("INGEST_WRITERS", 2)  # PostgreSQL writer threads overlapping validation and COPY
INGEST_MAX_ROWS_PER_REQUEST = env_int("INGEST_MAX_ROWS_PER_REQUEST", 50_000)
INGEST_MAX_BODY_BYTES = env_int("INGEST_MAX_BODY_BYTES", 64 * 1024 * 1024)
SUBJECT_REQUEST_DUE_DAYS = env_int("SUBJECT_REQUEST_DUE_DAYS", 30)

# The release layer (privacy/release.py; docs/privacy.md, "Released numbers"): differential privacy for every
# number a merchant sees. The noise is keyed by RELEASE_NOISE_KEY and by what is counted, so the same set always
# gets the same number; each merchant spends a privacy budget (zCDP ρ) per period on new distinct releases.
RELEASE_NOISE_KEY = env_required("RELEASE_NOISE_KEY", production=PRODUCTION, dev_default="dev-only-release-noise-key")
if PRODUCTION and len(RELEASE_NOISE_KEY) < 32:
    raise ImproperlyConfigured("RELEASE_NOISE_KEY must be at least 32 characters in production")
PRIVACY_BUDGET_PERIOD = env_str("PRIVACY_BUDGET_PERIOD", "month")
if PRIVACY_BUDGET_PERIOD not in ("month", "week", "day"):
    raise ImproperlyConfigured("PRIVACY_BUDGET_PERIOD must be month, week or day")
try:
    PRIVACY_BUDGET_DEFAULT_RHO = float(env_str("PRIVACY_BUDGET_DEFAULT_RHO", "0.25"))
except ValueError as _exc:
    raise ImproperlyConfigured("PRIVACY_BUDGET_DEFAULT_RHO must be a number (zCDP rho per period)") from _exc
# "May this consumer be messaged now" (privacy/messaging.py; docs/privacy.md): consumers in the under-18 age range
# are never targeted by direct marketing unless privacy officers allow it. This is the default; officers override it
# in the admin (Messaging policy), audited.
DIRECT_MARKETING_MINORS_ALLOWED = env_bool("DIRECT_MARKETING_MINORS_ALLOWED", False)
RETENTION_PURGE_BATCH = env_int("RETENTION_PURGE_BATCH", 5000)
RETENTION_PURGE_BATCHES_PER_TASK = env_int("RETENTION_PURGE_BATCHES_PER_TASK", 20)
RETENTION_PURGE_MAX_ROUNDS = env_int("RETENTION_PURGE_MAX_ROUNDS", 50)
RECOMMEND_BATCH_CHUNK = env_int("RECOMMEND_BATCH_CHUNK", 8192)
RECOMMEND_KEEP_INACTIVE_MODELS = env_int("RECOMMEND_KEEP_INACTIVE_MODELS", 2)  # artefacts kept per algorithm
# What the nightly training schedule trains: category popularity is the baseline the others must beat (it serves when
# none does); iALS and EASE compete to serve (the better hold-out nDCG wins), ALS is the fast factor model lookalikes
# fall back on.
RECOMMEND_SCHEDULED_ALGORITHMS = env_list(
    "RECOMMEND_SCHEDULED_ALGORITHMS", default=["category_popular", "ials", "ease", "als"]
)
CAMPAIGN_PERSONALISE_WINDOW = env_int("CAMPAIGN_PERSONALISE_WINDOW", 50_000)  # consumers per recommender call
CAMPAIGN_WEBHOOK_BATCH_SIZE = env_int("CAMPAIGN_WEBHOOK_BATCH_SIZE", 500)  # deliveries per webhook POST
CAMPAIGN_WEBHOOK_ATTEMPTS = env_int("CAMPAIGN_WEBHOOK_ATTEMPTS", 4)
CAMPAIGN_WEBHOOK_BACKOFF_S = env_float("CAMPAIGN_WEBHOOK_BACKOFF_S", 0.5)  # first retry's wait, doubled each time
CAMPAIGN_WEBHOOK_TIMEOUT_S = env_float("CAMPAIGN_WEBHOOK_TIMEOUT_S", 10.0)
CAMPAIGN_MIN_RECURRENCE_MINUTES = env_int("CAMPAIGN_MIN_RECURRENCE_MINUTES", 1440)  # shortest gap between runs
CAMPAIGN_REPORT_MIN_RELEASED = env_int("CAMPAIGN_REPORT_MIN_RELEASED", 300)  # released group size before a verdict
CAMPAIGN_VARIANT_MIN_SAMPLE = env_int("CAMPAIGN_VARIANT_MIN_SAMPLE", 1000)  # released size per variant to pick a winner
CAMPAIGN_TEST_INBOX_PSEUDONYM = env_str("CAMPAIGN_TEST_INBOX_PSEUDONYM", "") or ""  # the operator's test inbox
MERCHANT_DEFAULT_TIME_ZONE = env_str("MERCHANT_DEFAULT_TIME_ZONE", "UTC") or "UTC"  # IANA zone of new merchants
MERCHANT_DEFAULT_CURRENCY = env_str("MERCHANT_DEFAULT_CURRENCY", "SGD") or "SGD"  # ISO 4217 code of new merchants
# A category or brand a merchant does not sell may be targeted only when this many merchants sell it.
SEGMENT_SHARED_VALUE_MIN_MERCHANTS = env_int("SEGMENT_SHARED_VALUE_MIN_MERCHANTS", 3)
# Real-time segments (segments/membership.py; docs/segments.md, "Real-time segments"): consumers re-evaluated per
# chunk (one transaction), per drain run, how long a burst is coalesced before the drain runs, and how many
# MembershipTransition rows one batch refresh writes per segment at most (entries first).
SEGMENT_STREAM_BATCH = env_int("SEGMENT_STREAM_BATCH", 5000)
SEGMENT_STREAM_MAX_PER_RUN = env_int("SEGMENT_STREAM_MAX_PER_RUN", 100_000)
SEGMENT_STREAM_COALESCE_MS = env_int("SEGMENT_STREAM_COALESCE_MS", 200)
SEGMENT_REFRESH_TRANSITIONS_MAX = env_int("SEGMENT_REFRESH_TRANSITIONS_MAX", 100_000)
# Memory model training may use, in MiB; 0 = half of the machine's (or container's) memory. recommend/memory.py
RECOMMEND_MEMORY_BUDGET_MB = env_int("RECOMMEND_MEMORY_BUDGET_MB", 0)
# How late a consumer or consent row may commit after its timestamp and still reach the fresh-on-read bitmaps
# before the next tagging run (tags.bitmaps.change_window_floor).
FRESH_BITMAP_OVERLAP_SECONDS = env_int("FRESH_BITMAP_OVERLAP_SECONDS", 120)
SHARED_DATA_DIR = Path(env_str("DMP_SHARED_DATA", str(BASE_DIR.parent / "shared" / "data")))
BLAS_THREADS = env_int("BLAS_THREADS", 1)
# Predicted traits (docs/predictions.md): each model is fitted, chosen and measured on a stratified sample of at
# most this many rows of its training and of its validation window; scoring covers every consumer.
PREDICT_TRAIN_MAX_ROWS = env_int("PREDICT_TRAIN_MAX_ROWS", 50_000)
# store_propensity scores a consumer for their this many most-visited stores of the last 180 days (0: every store
# they touched). docs/predictions.md has what the cap costs and saves.
PREDICT_STORE_CANDIDATES = env_int("PREDICT_STORE_CANDIDATES", 5)
# How many recommender factors (iALS fitted at each cut-off on the interactions before it) every family gets as
# features; 0 (the default) leaves them out: on the synthetic benchmark they did not improve any family and made
# most slightly worse (docs/predictions.md has both sets of figures). 16 is the measured setting.
PREDICT_FACTORS = env_int("PREDICT_FACTORS", 0)

LOG_LEVEL = env_str("LOG_LEVEL", "INFO")
# Commands run by a person show WARNING and above on the console (their own output is the progress); see logformat.
LOGGING_CONFIG = "config.logformat.configure"
LOGGING = {
    "version": 1,
    "disable_existing_loggers": False,
    "formatters": {
        "structured": {"()": "config.logformat.StructuredFormatter"},
    },
    "handlers": {
        "console": {"class": "logging.StreamHandler", "formatter": "structured"},
    },
    "root": {"handlers": ["console"], "level": LOG_LEVEL},
    "loggers": {
        "django.db.backends": {"level": "WARNING"},
        "django.request": {"level": "ERROR"},
    },
}

# --------------------------------------------------------------------------------------------------------------
# Privacy hardening (issue 11): phone normalisation, the audit checkpoint, sign-in lockout.
# Keep these together; the README's configuration table lists each variable.
# --------------------------------------------------------------------------------------------------------------

# Phone numbers without an international prefix are read as numbers of this region (ISO 3166 alpha-2) before
# pseudonymisation, so "+65 9000 1234", "0065 9000 1234" and "9000 1234" are one consumer. Changing it changes
# the pseudonym of every phone number written without a prefix: treat it as long-lived, like PSEUDONYM_KEY.
PHONE_DEFAULT_REGION = (env_str("PHONE_DEFAULT_REGION", "SG") or "SG").upper()


def _phone_region_check(region: str) -> None:
    import phonenumbers

    if region not in phonenumbers.SUPPORTED_REGIONS:
        raise ImproperlyConfigured(f"PHONE_DEFAULT_REGION must be an ISO 3166 region code, got {region!r}")


_phone_region_check(PHONE_DEFAULT_REGION)

# The signed checkpoint of the audit chain's length and head, kept apart from the database (privacy.audit).
AUDIT_CHECKPOINT_PATH = Path(env_str("AUDIT_CHECKPOINT_PATH", str(VAR_DIR / "audit-checkpoint.json")))

# Sign-in lockout (django-axes) for the portal and the admin: after LOGIN_FAILURE_LIMIT failed attempts for one
# username from one address, that pair is refused (HTTP 429, even with the right password) for
# LOGIN_LOCKOUT_MINUTES, or until an officer unlocks it (admin, or `manage.py login_unlock`). API keys are not
# passwords and are not affected.
INSTALLED_APPS += ["axes"]
MIDDLEWARE += ["axes.middleware.AxesMiddleware"]  # last, as django-axes requires
AUTHENTICATION_BACKENDS = [
    "axes.backends.AxesStandaloneBackend",
    "django.contrib.auth.backends.ModelBackend",
]
AXES_FAILURE_LIMIT = env_int("LOGIN_FAILURE_LIMIT", 5)
AXES_COOLOFF_TIME = env_int("LOGIN_LOCKOUT_MINUTES", 30) / 60  # hours
AXES_LOCKOUT_PARAMETERS = [["username", "ip_address"]]
AXES_RESET_ON_SUCCESS = True
AXES_LOCKOUT_TEMPLATE = "portal/locked_out.html"
AXES_HTTP_RESPONSE_CODE = 429
AXES_ENABLE_ADMIN = False  # privacy.admin registers an officers' view with an audited unlock action
AXES_DISABLE_ACCESS_LOG = True  # successful sign-ins are not kept: only failures matter here
AXES_VERBOSE = False
LOGGING["loggers"]["axes"] = {"level": "WARNING"}  # its INFO line per failed attempt is noise; lockouts are audited
# The client address: REMOTE_ADDR, unless API_NUM_PROXIES trusted proxies (e.g. 1 for the TLS terminator) put it
# in X-Forwarded-For; trusting a header nobody strips would let a guesser pick a new address per attempt.
if REST_FRAMEWORK["NUM_PROXIES"]:
    AXES_IPWARE_PROXY_COUNT = REST_FRAMEWORK["NUM_PROXIES"]
    AXES_IPWARE_META_PRECEDENCE_ORDER = ["HTTP_X_FORWARDED_FOR", "REMOTE_ADDR"]
else:
    AXES_IPWARE_META_PRECEDENCE_ORDER = ["REMOTE_ADDR"]
