"""Settings for the chargeback project, read from the environment.

Every setting a deployment changes is an environment variable (listed in the
README); the defaults give the embedded first run: SQLite, Celery eager.
"""

import os
import warnings
from pathlib import Path

import dj_database_url
from celery.schedules import crontab

BASE_DIR = Path(__file__).resolve().parent.parent


def env_bool(name: str, default: bool) -> bool:
    value = os.environ.get(name)
    if value is None:
        return default
    return value.strip().lower() in {"1", "true", "yes", "on"}


# A development key is fine for the embedded default; production sets its own.
SECRET_KEY = os.environ.get("DJANGO_SECRET_KEY", "dev-only-insecure-key-change-me")
# Off unless asked for (`make demo` asks): a 500 must never show a traceback to a user.
DEBUG = env_bool("DJANGO_DEBUG", False)
ALLOWED_HOSTS = [h for h in os.environ.get("DJANGO_ALLOWED_HOSTS", "127.0.0.1,localhost,testserver").split(",") if h]
CSRF_TRUSTED_ORIGINS = [o for o in os.environ.get("DJANGO_CSRF_TRUSTED_ORIGINS", "").split(",") if o]

INSTALLED_APPS = [
    "django.contrib.admin",
    "django.contrib.auth",
    "django.contrib.contenttypes",
    "django.contrib.sessions",
    "django.contrib.messages",
    "django.contrib.staticfiles",
    "django.contrib.humanize",
    "rest_framework",
    "django_filters",
    "drf_spectacular",
    # Swagger UI and Redoc as our own static files: /api/v1/docs/ works offline, no CDN.
    "drf_spectacular_sidecar",
    "axes",
    "pricing",
    "allocation",
    "budgets",
    "chargeback",
]

MIDDLEWARE = [
    "django.middleware.security.SecurityMiddleware",
    # An id per request, echoed as X-Request-ID and written on every audit row.
    "chargeback.middleware.RequestIdMiddleware",
    # A NUL byte in a path or query is a 400 before any view (PostgreSQL would 500 on it).
    "chargeback.middleware.RefuseNulBytesMiddleware",
    "django.contrib.sessions.middleware.SessionMiddleware",
    "django.middleware.common.CommonMiddleware",
    "django.middleware.csrf.CsrfViewMiddleware",
    "django.contrib.auth.middleware.AuthenticationMiddleware",
    # Every page's access rule (allocation/access.py); the API checks its own in DRF.
    "chargeback.middleware.AccessMiddleware",
    "django.contrib.messages.middleware.MessageMiddleware",
    "django.middleware.clickjacking.XFrameOptionsMiddleware",
    # django-axes wants to be last: it turns a locked-out login into its lockout answer.
    "axes.middleware.AxesMiddleware",
]

# django-axes throttles failed logins per user name and address; its backend goes first.
AUTHENTICATION_BACKENDS = [
    "axes.backends.AxesStandaloneBackend",
    "django.contrib.auth.backends.ModelBackend",
]
AXES_FAILURE_LIMIT = int(os.environ.get("AXES_FAILURE_LIMIT", "5"))
AXES_COOLOFF_TIME = float(os.environ.get("AXES_COOLOFF_HOURS", "1"))  # hours
AXES_LOCKOUT_PARAMETERS = [["username", "ip_address"]]
AXES_RESET_ON_SUCCESS = True
AXES_LOCKOUT_TEMPLATE = "registration/locked_out.html"

ROOT_URLCONF = "chargeback.urls"
WSGI_APPLICATION = "chargeback.wsgi.application"

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
                "chargeback.context_processors.access",
            ],
        },
    },
]

# SQLite file by default so a fresh clone runs with nothing installed;
# production points DATABASE_URL at PostgreSQL.
DATABASES = {
    "default": dj_database_url.parse(
        os.environ.get("DATABASE_URL", f"sqlite:///{BASE_DIR / 'db.sqlite3'}"),
        conn_max_age=int(os.environ.get("DATABASE_CONN_MAX_AGE", "0")),
    )
}
if DATABASES["default"]["ENGINE"] == "django.db.backends.sqlite3":
    # Waiting on a lock beats failing while a background ingest writes.
    DATABASES["default"].setdefault("OPTIONS", {})["timeout"] = 30

DEFAULT_AUTO_FIELD = "django.db.models.BigAutoField"

AUTH_PASSWORD_VALIDATORS = [
    {"NAME": "django.contrib.auth.password_validation.MinimumLengthValidator"},
    {"NAME": "django.contrib.auth.password_validation.CommonPasswordValidator"},
]

LANGUAGE_CODE = "en-us"
TIME_ZONE = "UTC"  # usage and invoices are kept and reported in UTC
USE_I18N = True
USE_TZ = True

STATIC_URL = "static/"
STATICFILES_DIRS = [BASE_DIR / "static"]
STATIC_ROOT = Path(os.environ.get("DJANGO_STATIC_ROOT", BASE_DIR / "var" / "static"))

LOGIN_URL = "login"
LOGIN_REDIRECT_URL = "home"
LOGOUT_REDIRECT_URL = "login"

# Where uploaded sources and generated files live.
MEDIA_ROOT = Path(os.environ.get("CHARGEBACK_MEDIA_ROOT", BASE_DIR / "var" / "media"))

REST_FRAMEWORK = {
    "DEFAULT_AUTHENTICATION_CLASSES": [
        "allocation.api.access.ApiTokenAuthentication",
        "rest_framework.authentication.SessionAuthentication",
    ],
    # Every API view's URL rule (allocation/access.py), as for the pages.
    "DEFAULT_PERMISSION_CLASSES": ["allocation.api.access.AccessRulePermission"],
    "DEFAULT_FILTER_BACKENDS": ["django_filters.rest_framework.DjangoFilterBackend"],
    # DRF's limit/offset, bounded: a limit of twenty digits is a 400, not a 500.
    "DEFAULT_PAGINATION_CLASS": "chargeback.api.pagination.LimitOffsetPagination",
    "PAGE_SIZE": 100,
    "DEFAULT_SCHEMA_CLASS": "drf_spectacular.openapi.AutoSchema",
    "EXCEPTION_HANDLER": "chargeback.api.exceptions.application_exception_handler",
    # Decimals travel as strings so no client turns money into floats.
    "COERCE_DECIMAL_TO_STRING": True,
}

SPECTACULAR_SETTINGS = {
    "TITLE": "AI spend chargeback API",
    "VERSION": "1.0.0",
    "SERVE_INCLUDE_SCHEMA": False,
    # The schema and its docs go through the access rules like every other URL.
    "SERVE_PERMISSIONS": ["allocation.api.access.AccessRulePermission"],
    # Every operation's errors are {code, message, extra}; the schema says so.
    "POSTPROCESSING_HOOKS": [
        "drf_spectacular.hooks.postprocess_schema_enums",
        "chargeback.api.schema.error_responses",
    ],
    # The docs pages load Swagger UI and Redoc from drf_spectacular_sidecar's static files, not a CDN.
    "SWAGGER_UI_DIST": "SIDECAR",
    "SWAGGER_UI_FAVICON_HREF": "SIDECAR",
    "REDOC_DIST": "SIDECAR",
}

# Celery: with no broker configured, tasks run in-process (eager) so the
# embedded default needs no Redis; production sets CELERY_BROKER_URL.
CELERY_BROKER_URL = os.environ.get("CELERY_BROKER_URL", "")
CELERY_RESULT_BACKEND = os.environ.get("CELERY_RESULT_BACKEND", CELERY_BROKER_URL or None)
CELERY_TASK_ALWAYS_EAGER = not CELERY_BROKER_URL
CELERY_TASK_EAGER_PROPAGATES = True
CELERY_TASK_SERIALIZER = "json"
CELERY_RESULT_SERIALIZER = "json"
CELERY_ACCEPT_CONTENT = ["json"]
CELERY_TIMEZONE = TIME_ZONE
# A stuck ingest must not hold a worker forever; a large file fits well inside.
CELERY_TASK_TIME_LIMIT = int(os.environ.get("CELERY_TASK_TIME_LIMIT", "3600"))
CELERY_TASK_SOFT_TIME_LIMIT = CELERY_TASK_TIME_LIMIT - 60
CELERY_TASK_ACKS_LATE = True
CELERY_WORKER_PREFETCH_MULTIPLIER = 1
# A worker process that renders statement PDFs grows ~12 MB per 100 (WeasyPrint's and
# Pango's caches; bench/statement_pdf/worker.py): recycled after 50 tasks, each stays at
# ~200 MB (a new process warms up in about a second: 200 PDFs took 108.8 s, 106.7 s
# without recycling). 0: never recycled.
CELERY_WORKER_MAX_TASKS_PER_CHILD = int(os.environ.get("CELERY_WORKER_MAX_TASKS_PER_CHILD", "50")) or None
# Nightly, the open months are rated keeping what their allocation needs, so that a
# run at the close prices kept sums instead of reading the month's ledger.
CELERY_BEAT_SCHEDULE: dict = {
    "rate-open-months": {
        "task": "allocation.tasks.usage_rate_open_periods_task",
        "schedule": crontab(hour=2, minute=15),
    },
    # Likewise the requests and traces per feature that statements divide by.
    "count-open-months": {
        "task": "chargeback.tasks.feature_counts_open_periods_task",
        "schedule": crontab(hour=2, minute=45),
    },
}

# Ingestion: records per COPY chunk. Memory is bounded by this, not by the file
# (about 130 MB at 200,000); fewer, larger chunks spread the per-commit wait.
CHARGEBACK_INGEST_CHUNK_ROWS = int(os.environ.get("CHARGEBACK_INGEST_CHUNK_ROWS", "200000"))

# Reconciliation: a provider whose rated usage differs from its invoice by more
# than this share flags the run; the true-up scales usage by at most this much.
CHARGEBACK_RECONCILIATION_TOLERANCE = os.environ.get("CHARGEBACK_RECONCILIATION_TOLERANCE", "0.02")

# The monthly close. A team may dispute a statement line while it is in review and for
# this many days after sign-off; finance decides a dispute within the SLA, or it stands
# out as overdue. Unallocated buckets appear on the statement of the cost center named
# here (the platform team that runs the AI gateway, usually); empty: on the dashboard only.
# The default is the demo organization's AI Platform, so the embedded first run shows
# them on a statement; a cost center with no such code leaves them on the dashboard.
CHARGEBACK_DISPUTE_WINDOW_DAYS = int(os.environ.get("CHARGEBACK_DISPUTE_WINDOW_DAYS", "10"))
CHARGEBACK_DISPUTE_SLA_DAYS = int(os.environ.get("CHARGEBACK_DISPUTE_SLA_DAYS", "5"))
CHARGEBACK_UNALLOCATED_OWNER = os.environ.get("CHARGEBACK_UNALLOCATED_OWNER", "CC-1100")

# The signed statement PDFs (PAdES B-B): the organization's signing certificate and key
# as PKCS#12, its passphrase, and the organization's CA (PEM), the one trust root that
# verification accepts. The defaults are what `make_signing_certificate` writes for the
# demo; production points them at a certificate from its own CA (README "Signed PDFs").
# pyHanko imports DSA support (never used here: the signing key is RSA); the library's
# deprecation notice would otherwise open every command's output.
warnings.filterwarnings("ignore", message="DSA is deprecated", module=r"pyhanko\.")
CHARGEBACK_SIGNING_P12 = Path(os.environ.get("CHARGEBACK_SIGNING_P12", BASE_DIR / "var" / "signing" / "signer.p12"))
CHARGEBACK_SIGNING_PASSPHRASE = os.environ.get("CHARGEBACK_SIGNING_PASSPHRASE", "dev-only-signing-passphrase")
CHARGEBACK_SIGNING_CA = Path(os.environ.get("CHARGEBACK_SIGNING_CA", BASE_DIR / "var" / "signing" / "ca.pem"))
# Approving a statement queues the task that renders and signs its PDF (on commit). Off,
# approval makes no PDF: `statement_pdf_issue` (or the task) makes it later.
CHARGEBACK_STATEMENT_PDF_ON_APPROVAL = os.environ.get("CHARGEBACK_STATEMENT_PDF_ON_APPROVAL", "true").lower() in {
    "1",
    "true",
    "yes",
}
# The largest PDF the verification page takes: a statement of a few hundred lines is well below.
CHARGEBACK_VERIFY_MAX_BYTES = int(os.environ.get("CHARGEBACK_VERIFY_MAX_BYTES", str(20 * 1024 * 1024)))
# Journal entries (README "Journal entries"). The company (legal entity, company code) the
# ERP books them in; the clearing accounts that take the other side of a cost center's
# charge: provider invoices (the AP side of AI spend) and internal transfers between cost
# centers (fixed fees), which nets to zero once every statement of a month is approved.
# Lines are summed per GL account pair, and per modality unless "account" is set here.
CHARGEBACK_COMPANY = os.environ.get("CHARGEBACK_COMPANY", "1000")
CHARGEBACK_GL_PROVIDER_CLEARING = os.environ.get("CHARGEBACK_GL_PROVIDER_CLEARING", "2150")
CHARGEBACK_GL_INTERNAL_CLEARING = os.environ.get("CHARGEBACK_GL_INTERNAL_CLEARING", "2160")
CHARGEBACK_JOURNAL_GROUP_BY = os.environ.get("CHARGEBACK_JOURNAL_GROUP_BY", "modality")

# Dispute mail goes through Django's email framework: SMTP when a host is set, else the
# console (the embedded default prints mail where the server runs).
EMAIL_HOST = os.environ.get("EMAIL_HOST", "")
EMAIL_PORT = int(os.environ.get("EMAIL_PORT", "25"))
EMAIL_HOST_USER = os.environ.get("EMAIL_HOST_USER", "")
EMAIL_HOST_PASSWORD = os.environ.get("EMAIL_HOST_PASSWORD", "")
EMAIL_USE_TLS = os.environ.get("EMAIL_USE_TLS", "").lower() in {"1", "true", "yes"}
EMAIL_BACKEND = (
    "django.core.mail.backends.smtp.EmailBackend" if EMAIL_HOST else "django.core.mail.backends.console.EmailBackend"
)
DEFAULT_FROM_EMAIL = os.environ.get("DEFAULT_FROM_EMAIL", "chargeback@localhost")
# Seconds a mail server may take to answer before the send fails (and is logged): mail
# goes on commit, inside the request, so a hanging server must not hang the request.
EMAIL_TIMEOUT = int(os.environ.get("EMAIL_TIMEOUT", "10"))

# The cache carries an allocation run's progress from the worker to the pages
# while the run's transaction is open: Redis when one is configured (shared by
# web and workers), else process memory, which suits the eager default.
CHARGEBACK_CACHE_URL = os.environ.get(
    "CHARGEBACK_CACHE_URL", CELERY_BROKER_URL if CELERY_BROKER_URL.startswith("redis") else ""
)
CACHES = {
    "default": (
        {"BACKEND": "django.core.cache.backends.redis.RedisCache", "LOCATION": CHARGEBACK_CACHE_URL}
        if CHARGEBACK_CACHE_URL
        else {"BACKEND": "django.core.cache.backends.locmem.LocMemCache"}
    )
}

LOGGING = {
    "version": 1,
    "disable_existing_loggers": False,
    "handlers": {"console": {"class": "logging.StreamHandler"}},
    "root": {"handlers": ["console"], "level": os.environ.get("DJANGO_LOG_LEVEL", "WARNING")},
}
