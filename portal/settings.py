"""Gatehouse settings: read from the environment only (see the settings table in README.md).

Two profiles share this file. With DEBUG on and nothing else set, everything is embedded: a SQLite file and a
filesystem message broker under ``var/``, a secret key generated there on first use. Production sets
DATABASE_URL, CELERY_BROKER_URL, SECRET_KEY and ALLOWED_HOSTS and gets safe defaults for everything else.
"""

from __future__ import annotations

import os
import re
import secrets
from pathlib import Path
from typing import Any

import environ
from django.core.exceptions import ImproperlyConfigured

BASE_DIR = Path(__file__).resolve().parent.parent

env = environ.Env()


def _secret(name: str, default: str | None = None) -> str | None:
    """Read a secret from NAME, or from the file named by NAME_FILE (Docker/Kubernetes secrets)."""
    path = env.str(f"{name}_FILE", default="")
    if path:
        try:
            return Path(path).read_text().strip()
        except OSError as exc:
            raise ImproperlyConfigured(f"{name}_FILE={path} cannot be read: {exc.strerror}") from None
    return env.str(name, default=default)


DEBUG = env.bool("DEBUG", default=False)
VAR_DIR = Path(env.str("GATEHOUSE_VAR_DIR", default=str(BASE_DIR / "var")))
VAR_DIR.mkdir(parents=True, exist_ok=True)


def _generated_secret(path: Path, size: int) -> str:
    """Demo profile: a key kept in a file under var/ that survives restarts but never leaves this machine.
    Created exclusively, so the web server, worker and beat starting together agree on one key."""
    try:
        fd = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o600)
    except FileExistsError:
        pass
    else:
        with os.fdopen(fd, "w") as handle:
            handle.write(secrets.token_urlsafe(size))
    return path.read_text().strip()


SECRET_KEY = _secret("SECRET_KEY") or ""
if not SECRET_KEY:
    if not DEBUG:
        raise ImproperlyConfigured("SECRET_KEY must be set when DEBUG is off (or set SECRET_KEY_FILE).")
    SECRET_KEY = _generated_secret(VAR_DIR / "secret_key", 50)

ALLOWED_HOSTS = env.list("ALLOWED_HOSTS", default=["localhost", "127.0.0.1", "[::1]"] if DEBUG else [])
CSRF_TRUSTED_ORIGINS = env.list("CSRF_TRUSTED_ORIGINS", default=[])
SITE_URL = env.str("SITE_URL", default="http://127.0.0.1:8000").rstrip("/")

INSTALLED_APPS = [
    "portal.apps.GatehouseAdminConfig",
    "django.contrib.auth",
    "django.contrib.contenttypes",
    "django.contrib.sessions",
    "django.contrib.messages",
    "whitenoise.runserver_nostatic",
    "django.contrib.staticfiles",
    "django.contrib.humanize",
    "allauth",
    "allauth.account",
    "allauth.mfa",
    "allauth.socialaccount",
    "allauth.socialaccount.providers.openid_connect",
    "rest_framework",
    "drf_spectacular",
    "accessrequests",
]

MIDDLEWARE = [
    "django.middleware.security.SecurityMiddleware",
    "whitenoise.middleware.WhiteNoiseMiddleware",
    "portal.middleware.RequestReferenceMiddleware",
    "accessrequests.api.middleware.ApiBodyLimitMiddleware",
    "accessrequests.api.middleware.ApiJsonErrorsMiddleware",
    "portal.middleware.RejectNulBytesMiddleware",
    "django.contrib.sessions.middleware.SessionMiddleware",
    "django.middleware.common.CommonMiddleware",
    "django.middleware.csrf.CsrfViewMiddleware",
    "django.contrib.auth.middleware.AuthenticationMiddleware",
    "django.contrib.messages.middleware.MessageMiddleware",
    "django.middleware.clickjacking.XFrameOptionsMiddleware",
    "allauth.account.middleware.AccountMiddleware",
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
                "portal.context_processors.gatehouse",
            ],
        },
    },
]

# Database: DATABASE_URL, or an embedded SQLite file for the demo.
_default_db = f"sqlite:///{VAR_DIR / 'gatehouse.sqlite3'}"
_db_url = env.str("DATABASE_URL", default="") or _default_db
_db_scheme = _db_url.split("://", 1)[0] if "://" in _db_url else ""
if _db_scheme not in {"postgres", "postgresql", "pgsql", "psql", "sqlite"}:
    # Never echo the URL itself: it usually carries a password.
    raise ImproperlyConfigured(
        f"DATABASE_URL must look like postgres://user:password@host:5432/name or sqlite:///path "
        f"(got scheme {_db_scheme or 'none'!r})."
    )
try:
    DATABASES = {"default": env.db_url_config(_db_url)}
except (ImproperlyConfigured, KeyError, ValueError) as exc:
    raise ImproperlyConfigured(f"DATABASE_URL cannot be parsed ({exc.__class__.__name__}).") from None
DATABASES["default"].setdefault("CONN_MAX_AGE", env.int("DATABASE_CONN_MAX_AGE", default=60))
DATABASES["default"]["ATOMIC_REQUESTS"] = False
if DATABASES["default"]["ENGINE"].endswith("sqlite3"):
    # WAL lets the web process read while the worker writes; the timeout rides out short write locks.
    DATABASES["default"].setdefault("OPTIONS", {}).update(
        {"timeout": 20, "init_command": "PRAGMA journal_mode=WAL;", "transaction_mode": "IMMEDIATE"}
    )
    DATABASES["default"]["CONN_MAX_AGE"] = 0
    # A file, not :memory:, so that worker processes started by the tests share the test database; one per
    # test run (pid), so two runs on one machine never share or delete each other's database.
    DATABASES["default"]["TEST"] = {"NAME": str(VAR_DIR / f"test-{os.getpid()}.sqlite3")}
elif DATABASES["default"]["ENGINE"].endswith("postgresql"):
    # Django's PostgreSQL backend, plus writes queued to run just before commit (the audit chain's appends).
    DATABASES["default"]["ENGINE"] = "portal.db.postgresql"
    # One test database per test run, so runs sharing a server never drop each other's database.
    DATABASES["default"]["TEST"] = {"NAME": f"test_{DATABASES['default']['NAME']}_{os.getpid()}"}
DEFAULT_AUTO_FIELD = "django.db.models.BigAutoField"
FORMS_URLFIELD_ASSUME_HTTPS = True  # Django 6's default now: a scheme-less URL typed in admin means https

AUTH_PASSWORD_VALIDATORS = [
    {"NAME": "django.contrib.auth.password_validation.UserAttributeSimilarityValidator"},
    {"NAME": "django.contrib.auth.password_validation.MinimumLengthValidator", "OPTIONS": {"min_length": 10}},
    {"NAME": "django.contrib.auth.password_validation.CommonPasswordValidator"},
    {"NAME": "django.contrib.auth.password_validation.NumericPasswordValidator"},
]
AUTHENTICATION_BACKENDS = [
    "django.contrib.auth.backends.ModelBackend",
    "allauth.account.auth_backends.AuthenticationBackend",
]

LANGUAGE_CODE = "en-us"
TIME_ZONE = env.str("TIME_ZONE", default="UTC")
USE_I18N = True
USE_TZ = True

STATIC_URL = "/static/"
STATIC_ROOT = Path(env.str("STATIC_ROOT", default=str(VAR_DIR / "static")))
STATIC_ROOT.mkdir(parents=True, exist_ok=True)


def _bootstrap_dir() -> str:
    # Bootstrap comes from the XStatic-Bootstrap package, never a CDN: portals often run offline.
    import xstatic.pkg.bootstrap

    return str(xstatic.pkg.bootstrap.BASE_DIR)


STATICFILES_DIRS = [BASE_DIR / "static", ("bootstrap", _bootstrap_dir())]
STORAGES = {
    "default": {"BACKEND": "django.core.files.storage.FileSystemStorage"},
    "staticfiles": {
        "BACKEND": "django.contrib.staticfiles.storage.StaticFilesStorage"
        if DEBUG
        else "whitenoise.storage.CompressedManifestStaticFilesStorage"
    },
}
WHITENOISE_USE_FINDERS = DEBUG

# Authentication: allauth with username or email, no open sign-up, TOTP MFA, optional OIDC.
SITE_ID = 1
LOGIN_URL = "account_login"
LOGIN_REDIRECT_URL = "home"
ACCOUNT_LOGOUT_REDIRECT_URL = "account_login"
ACCOUNT_LOGIN_METHODS = {"username", "email"}
ACCOUNT_SIGNUP_FIELDS = ["email*", "username*", "password1*", "password2*"]
ACCOUNT_EMAIL_VERIFICATION = env.str("ACCOUNT_EMAIL_VERIFICATION", default="none")
ACCOUNT_ADAPTER = "portal.adapters.AccountAdapter"
SOCIALACCOUNT_ADAPTER = "portal.adapters.SocialAccountAdapter"
MFA_ADAPTER = "portal.adapters.MFAAdapter"
GATEHOUSE_OPEN_SIGNUP = env.bool("GATEHOUSE_OPEN_SIGNUP", default=False)
ACCOUNT_SESSION_REMEMBER = False
MFA_SUPPORTED_TYPES = ["totp", "recovery_codes"]
MFA_TOTP_ISSUER = "Gatehouse"
# A code typed in the last second of its 30-second step, or on a phone whose clock is a few seconds off, still
# counts (RFC 6238 section 5.2 recommends one step of tolerance); a used code stays refused for the whole window.
MFA_TOTP_TOLERANCE = 1
# A decision on access needs a second factor presented within this many seconds (sign-in with TOTP, or
# allauth's reauthentication, which asks for the code again); the API takes a code with each decision.
GATEHOUSE_STEP_UP_SECONDS = env.int("GATEHOUSE_STEP_UP_SECONDS", default=300)
ACCOUNT_REAUTHENTICATION_TIMEOUT = GATEHOUSE_STEP_UP_SECONDS
# Allauth rate limits stay on (its defaults throttle failed logins); tests do not relax them.

OIDC_CLIENT_ID = env.str("OIDC_CLIENT_ID", default="")
OIDC_CLIENT_SECRET = _secret("OIDC_CLIENT_SECRET", default="") or ""
OIDC_SERVER_URL = env.str("OIDC_SERVER_URL", default="")
OIDC_PROVIDER_NAME = env.str("OIDC_PROVIDER_NAME", default="Single sign-on")
OIDC_PROVIDER_ID = "oidc"  # allauth's id of the one OpenID Connect app (its callback URL: /accounts/oidc/oidc/login/callback/)
OIDC_ENABLED = bool(OIDC_CLIENT_ID and OIDC_SERVER_URL)
# Scopes asked for at sign-in; most providers need one that releases the groups claim (Okta: groups).
OIDC_SCOPES = env.list("OIDC_SCOPES", default=["openid", "profile", "email"])
# The ID token / userinfo claim that lists the person's groups at the identity provider.
GATEHOUSE_OIDC_GROUPS_CLAIM = env.str("GATEHOUSE_OIDC_GROUPS_CLAIM", default="groups")


def _group_roles(raw: str) -> dict[str, frozenset[str]]:
    """``aws-approvers=approvers,sec=auditors`` -> {idp group: portal roles}. Only roles named here are ever
    given (or taken) by the identity provider; admins too only when the mapping says so."""
    from accessrequests.core.roles import ROLE_GROUPS

    mapping: dict[str, set[str]] = {}
    for item in filter(None, (part.strip() for part in raw.split(","))):
        group, sep, role = item.rpartition("=")
        group, role = group.strip(), role.strip()
        if not sep or not group or role not in ROLE_GROUPS:
            raise ImproperlyConfigured(
                f"GATEHOUSE_OIDC_GROUP_ROLES: {item!r} must be <identity provider group>=<role>, the role one of "
                + ", ".join(ROLE_GROUPS)
            )
        mapping.setdefault(group, set()).add(role)
    return {group: frozenset(roles) for group, roles in mapping.items()}


# Identity provider groups -> portal roles, applied at every OIDC sign-in and every SCIM group change.
GATEHOUSE_OIDC_GROUP_ROLES = _group_roles(env.str("GATEHOUSE_OIDC_GROUP_ROLES", default=""))
SOCIALACCOUNT_PROVIDERS: dict = {
    "openid_connect": {
        "OAUTH_PKCE_ENABLED": True,
        "SCOPE": OIDC_SCOPES,
        # allauth's provider plus a nonce in every authorization request, checked in the ID token (portal/oidc.py).
        "provider_class": "portal.oidc.NonceOpenIDConnectProvider",
        "APPS": [
            {
                "provider_id": OIDC_PROVIDER_ID,
                "name": OIDC_PROVIDER_NAME,
                "client_id": OIDC_CLIENT_ID,
                "secret": OIDC_CLIENT_SECRET,
                "settings": {"server_url": OIDC_SERVER_URL},
            }
        ]
        if OIDC_ENABLED
        else [],
    }
}
SOCIALACCOUNT_ONLY = False
SOCIALACCOUNT_AUTO_SIGNUP = True
GATEHOUSE_OIDC_SIGNUP = env.bool("GATEHOUSE_OIDC_SIGNUP", default=True)

# Email
EMAIL_CONFIG = env.email_url("EMAIL_URL", default="consolemail://" if DEBUG else "smtp://localhost:25")
vars().update(EMAIL_CONFIG)
# Seconds an SMTP connection may take to connect, and each message to send: a notification run holds its claim on
# a message for at most this long twice (accessrequests/notify/send.py, CLAIM_LEASE), so it must stay short.
EMAIL_TIMEOUT = env.int("EMAIL_TIMEOUT", default=10)
DEFAULT_FROM_EMAIL = env.str("DEFAULT_FROM_EMAIL", default="Gatehouse <gatehouse@localhost>")
SERVER_EMAIL = DEFAULT_FROM_EMAIL

# Celery: a broker that needs no server by default (kombu's filesystem transport under var/).
_broker_dir = VAR_DIR / "broker"
CELERY_BROKER_URL = env.str("CELERY_BROKER_URL", default="filesystem://")
CELERY_RESULT_BACKEND = env.str(
    "CELERY_RESULT_BACKEND",
    default=CELERY_BROKER_URL
    if CELERY_BROKER_URL.startswith(("redis://", "rediss://"))
    else f"file://{VAR_DIR / 'results'}",
)
if CELERY_BROKER_URL.startswith("filesystem://"):
    for _sub in ("queue", "processed", "control"):
        (_broker_dir / _sub).mkdir(parents=True, exist_ok=True)
    (VAR_DIR / "results").mkdir(parents=True, exist_ok=True)
    CELERY_BROKER_TRANSPORT_OPTIONS: dict = {
        "data_folder_in": str(_broker_dir / "queue"),
        "data_folder_out": str(_broker_dir / "queue"),
        "processed_folder": str(_broker_dir / "processed"),
        "control_folder": str(_broker_dir / "control"),
        "store_processed": False,
    }
else:
    # A short visibility timeout: an unacked task of a killed worker comes back within minutes, and no
    # task here runs anywhere near that long (expiry is a database sweep, never a long countdown).
    CELERY_BROKER_TRANSPORT_OPTIONS = {
        "visibility_timeout": env.int("CELERY_VISIBILITY_TIMEOUT", default=300),
        "socket_connect_timeout": 5,
        "socket_timeout": 10,
    }
CELERY_TASK_ALWAYS_EAGER = False

# One cache shared by every process: allauth's sign-in rate limits and lockouts, and its record of used TOTP
# codes (a replayed code must fail on every web process and API worker, not only the one that saw it).
# CACHE_URL wins; else Redis when Redis is the broker (its own key prefix); else a file cache under var/.
_cache_url = env.str("CACHE_URL", default="")
if _cache_url:
    CACHES = {"default": env.cache_url_config(_cache_url)}
elif CELERY_BROKER_URL.startswith(("redis://", "rediss://")):
    CACHES = {
        "default": {
            "BACKEND": "django.core.cache.backends.redis.RedisCache",
            "LOCATION": CELERY_BROKER_URL,
        }
    }
else:
    CACHES = {
        "default": {
            "BACKEND": "django.core.cache.backends.filebased.FileBasedCache",
            "LOCATION": str(VAR_DIR / "cache"),
        }
    }
CACHES["default"].setdefault("KEY_PREFIX", env.str("GATEHOUSE_CACHE_PREFIX", default="gatehouse"))
# Pending requests nobody decided within this many hours are closed as "expired unreviewed".
GATEHOUSE_PENDING_EXPIRY_HOURS = env.int("GATEHOUSE_PENDING_EXPIRY_HOURS", default=72)
# Rules as code: when set, approval and eligibility rules come from this YAML file (applied by beat and at each
# worker's start), and the admin shows them read-only.
GATEHOUSE_RULES_FILE = env.str("GATEHOUSE_RULES_FILE", default="")
GATEHOUSE_RULES_FILE_MINUTES = env.int("GATEHOUSE_RULES_FILE_MINUTES", default=5)
GATEHOUSE_HEARTBEAT_SECONDS = env.int("GATEHOUSE_HEARTBEAT_SECONDS", default=15)
GATEHOUSE_HEARTBEAT_MAX_AGE = env.int("GATEHOUSE_HEARTBEAT_MAX_AGE", default=120)

# AWS: moto in the demo and the tests, real AWS in production (through each account's provisioning role).
AWS_ENDPOINT_URL = env.str("AWS_ENDPOINT_URL", default="") or None
AWS_DEFAULT_REGION = env.str("AWS_DEFAULT_REGION", default="us-east-1")
# Daily audit archive and signed checkpoints to S3 (Object Lock, compliance mode); off when no bucket is named.
GATEHOUSE_AUDIT_BUCKET = env.str("GATEHOUSE_AUDIT_BUCKET", default="")
GATEHOUSE_AUDIT_PREFIX = env.str("GATEHOUSE_AUDIT_PREFIX", default="gatehouse-audit")
# Days S3 keeps each checkpoint and archive object undeletable; 0 writes them without Object Lock (for a bucket
# that was created without it).
GATEHOUSE_AUDIT_RETENTION_DAYS = env.int("GATEHOUSE_AUDIT_RETENTION_DAYS", default=365)
# Checkpoints are also kept in this folder (outside the database) so verify_audit can compare without S3.
GATEHOUSE_AUDIT_CHECKPOINT_DIR = Path(
    env.str("GATEHOUSE_AUDIT_CHECKPOINT_DIR", default=str(VAR_DIR / "audit-checkpoints"))
)
# The key that signs checkpoints. Never in the database: someone who can rewrite the audit table must not be able
# to sign a matching checkpoint. Only the worker that writes checkpoints and whoever runs verify_audit need it.
GATEHOUSE_AUDIT_CHECKPOINT_KEY = _secret("GATEHOUSE_AUDIT_CHECKPOINT_KEY") or ""
if not GATEHOUSE_AUDIT_CHECKPOINT_KEY and DEBUG:
    GATEHOUSE_AUDIT_CHECKPOINT_KEY = _generated_secret(VAR_DIR / "audit_checkpoint_key", 48)
# When an event recorded inside a transaction joins the chain: "at_commit" (PostgreSQL: just before the
# transaction commits, so the chain's lock is held for the append alone) or "immediate" (where it is recorded, the
# lock then held until the commit; SQLite always appends at once, its transactions admit one writer at a time).
GATEHOUSE_AUDIT_APPEND = env.str("GATEHOUSE_AUDIT_APPEND", default="at_commit")
if GATEHOUSE_AUDIT_APPEND not in ("at_commit", "immediate"):
    raise ImproperlyConfigured(
        f"GATEHOUSE_AUDIT_APPEND must be at_commit or immediate, not {GATEHOUSE_AUDIT_APPEND!r}"
    )
# CodePipeline is regional and has no "list all regions" call, so the catalog sync reads pipelines only in
# these regions (comma-separated); each extra region costs one ListPipelines per account per sync.
GATEHOUSE_REGIONS = env.list("GATEHOUSE_REGIONS", default=[AWS_DEFAULT_REGION])
# Catalog sync at the scale of an organization: accounts listed at once (threads; each mostly waits on AWS),
# how often every account is re-listed even when Organizations shows no change, how many such stale accounts
# one incremental run takes on, and after how long without a heartbeat a running sync counts as crashed.
GATEHOUSE_CATALOG_CONCURRENCY = env.int("GATEHOUSE_CATALOG_CONCURRENCY", default=8)
GATEHOUSE_CATALOG_RELIST_HOURS = env.int("GATEHOUSE_CATALOG_RELIST_HOURS", default=24)
GATEHOUSE_CATALOG_STALE_PER_RUN = env.int("GATEHOUSE_CATALOG_STALE_PER_RUN", default=100)
GATEHOUSE_CATALOG_SYNC_STALE_SECONDS = env.int("GATEHOUSE_CATALOG_SYNC_STALE_SECONDS", default=900)
# A pipeline that ListPipelines shows unchanged is read again in full (GetPipeline, its tags) once its last full
# reading is this old: tagging a pipeline does not change what the listing shows. Longer than the relist period,
# or every overdue account's relisting would read all its pipelines again. Listed accounts are written up to
# GATEHOUSE_CATALOG_WRITE_BATCH at a time, each batch in one transaction.
GATEHOUSE_CATALOG_PIPELINE_REFRESH_HOURS = env.int("GATEHOUSE_CATALOG_PIPELINE_REFRESH_HOURS", default=168)
GATEHOUSE_CATALOG_WRITE_BATCH = env.int("GATEHOUSE_CATALOG_WRITE_BATCH", default=50)
# The Identity Center AWS access portal (start URL), linked from requests that were granted through it.
GATEHOUSE_AWS_ACCESS_PORTAL_URL = env.str("GATEHOUSE_AWS_ACCESS_PORTAL_URL", default="")
# Gatehouse's own blast radius (deploy/cloudformation, docs/deploy.md). Every role Gatehouse creates is named with
# this prefix and carries this permissions boundary (the managed policy of that name in the role's account); the
# member accounts' provisioning role refuses CreateRole otherwise. An empty boundary creates roles without one,
# only for accounts deployed without the member template.
GATEHOUSE_ROLE_PREFIX = env.str("GATEHOUSE_ROLE_PREFIX", default="gatehouse-")
if not re.fullmatch(r"[\w+=,.@-]{1,32}", GATEHOUSE_ROLE_PREFIX):
    raise ImproperlyConfigured(
        f"GATEHOUSE_ROLE_PREFIX must be 1-32 characters allowed in IAM role names (got {GATEHOUSE_ROLE_PREFIX!r})."
    )
GATEHOUSE_PERMISSIONS_BOUNDARY = env.str("GATEHOUSE_PERMISSIONS_BOUNDARY", default="GatehouseBoundary")
if GATEHOUSE_PERMISSIONS_BOUNDARY and not re.fullmatch(r"[\w+=,.@-]{1,128}", GATEHOUSE_PERMISSIONS_BOUNDARY):
    raise ImproperlyConfigured(
        "GATEHOUSE_PERMISSIONS_BOUNDARY must be the name of a managed policy "
        f"(got {GATEHOUSE_PERMISSIONS_BOUNDARY!r})."
    )
# Accounts of the organization that the catalog sync records disabled when it first sees them (the management
# account and the Gatehouse account, which have no provisioning role): never listed, never offered.
GATEHOUSE_UNMANAGED_ACCOUNTS = env.list("GATEHOUSE_UNMANAGED_ACCOUNTS", default=[])
if any(not re.fullmatch(r"[0-9]{12}", account) for account in GATEHOUSE_UNMANAGED_ACCOUNTS):
    raise ImproperlyConfigured(
        f"GATEHOUSE_UNMANAGED_ACCOUNTS must list 12-digit account ids (got {GATEHOUSE_UNMANAGED_ACCOUNTS!r})."
    )
# The external id that the provisioning roles' and the Identity Center role's trust policies require.
AWS_PROVISIONING_EXTERNAL_ID = env.str("AWS_PROVISIONING_EXTERNAL_ID", default="")
# Identity Center runs in the management account or its delegated administrator: the hub assumes this role
# there for every sso-admin and identitystore call. Empty: the hub's own credentials (it runs in that account).
GATEHOUSE_IDENTITY_CENTER_ROLE_ARN = env.str("GATEHOUSE_IDENTITY_CENTER_ROLE_ARN", default="")
# Ending a person's older sessions of a shared permission set means adding a deny to a set Gatehouse did not create.
# Off by default, as the Identity Center role's template is (its EndSharedSetSessions parameter): a set's own
# administrators may not want Gatehouse able to rewrite it. Off, the page says until when such a session may last.
GATEHOUSE_END_SHARED_SET_SESSIONS = env.bool("GATEHOUSE_END_SHARED_SET_SESSIONS", default=False)


def _at_least(name: str, cast: type, default: float, least: float) -> Any:
    raw = env.str(name, default="")
    try:
        value = cast(raw) if raw else cast(default)
    except ValueError:
        value = None
    if value is None or not value >= least:  # also refuses NaN
        raise ImproperlyConfigured(f"{name} must be a number of at least {least:g} (got {raw!r}).")
    return value


# The Identity Center rate governor (accessrequests/aws/governor.py), shared by every worker through Redis (or a
# file lock in the embedded profile): calls per second, assignment creations (and, apart, deletions) outstanding
# at a time, and how long a crashed worker's outstanding slot is held before it frees itself.
GATEHOUSE_IC_TPS = _at_least("GATEHOUSE_IC_TPS", float, 20.0, 0.1)
GATEHOUSE_IC_OUTSTANDING = _at_least("GATEHOUSE_IC_OUTSTANDING", int, 10, 1)
GATEHOUSE_IC_LEASE_SECONDS = _at_least("GATEHOUSE_IC_LEASE_SECONDS", int, 60, 5)

# Production hardening: every `check --deploy` warning is answered when DEBUG is off.
if not DEBUG:
    SECURE_SSL_REDIRECT = env.bool("SECURE_SSL_REDIRECT", default=True)
    SESSION_COOKIE_SECURE = True
    CSRF_COOKIE_SECURE = True
    SECURE_HSTS_SECONDS = env.int("SECURE_HSTS_SECONDS", default=31_536_000)
    SECURE_HSTS_INCLUDE_SUBDOMAINS = env.bool("SECURE_HSTS_INCLUDE_SUBDOMAINS", default=True)
    SECURE_HSTS_PRELOAD = env.bool("SECURE_HSTS_PRELOAD", default=True)
    SECURE_REDIRECT_EXEMPT = [r"^healthz$"]
    if env.bool("SECURE_PROXY_SSL_HEADER", default=False):
        SECURE_PROXY_SSL_HEADER = ("HTTP_X_FORWARDED_PROTO", "https")
SESSION_COOKIE_HTTPONLY = True
SESSION_COOKIE_AGE = env.int("SESSION_COOKIE_AGE", default=8 * 3600)
X_FRAME_OPTIONS = "DENY"
SECURE_REFERRER_POLICY = "same-origin"

# Logging: JSON lines in production, readable lines in the demo; every line carries the request reference.
LOG_LEVEL = env.str("LOG_LEVEL", default="INFO")
LOG_FORMAT = env.str("LOG_FORMAT", default="text" if DEBUG else "json")
LOGGING = {
    "version": 1,
    "disable_existing_loggers": False,
    "filters": {"request_ref": {"()": "portal.middleware.RequestReferenceFilter"}},
    "formatters": {
        "json": {
            "()": "pythonjsonlogger.json.JsonFormatter",
            "format": "%(asctime)s %(levelname)s %(name)s %(message)s %(request_ref)s",
        },
        "text": {"format": "%(asctime)s %(levelname)s %(name)s [%(request_ref)s] %(message)s"},
    },
    "handlers": {
        "console": {"class": "logging.StreamHandler", "formatter": LOG_FORMAT, "filters": ["request_ref"]},
    },
    "root": {"handlers": ["console"], "level": LOG_LEVEL},
    "loggers": {
        "django.db.backends": {"level": "WARNING"},
        "botocore": {"level": "WARNING"},
        "urllib3": {"level": "WARNING"},
    },
}

GATEHOUSE_VERSION = "0.1.0"

# JSON API under /api/v1/: personal tokens (or the browser session), JSON in and out, errors as JSON.
REST_FRAMEWORK = {
    "DEFAULT_AUTHENTICATION_CLASSES": [
        "accessrequests.api.auth.TokenAuthentication",
        "rest_framework.authentication.SessionAuthentication",
    ],
    "DEFAULT_PERMISSION_CLASSES": ["rest_framework.permissions.IsAuthenticated"],
    "DEFAULT_PARSER_CLASSES": ["accessrequests.api.parsers.SafeJSONParser"],
    "DEFAULT_RENDERER_CLASSES": ["rest_framework.renderers.JSONRenderer"],
    "DEFAULT_SCHEMA_CLASS": "drf_spectacular.openapi.AutoSchema",
    "EXCEPTION_HANDLER": "accessrequests.api.errors.exception_handler",
    "UNAUTHENTICATED_USER": None,
}
SPECTACULAR_SETTINGS = {
    "TITLE": "Gatehouse API",
    "DESCRIPTION": "File, review and follow AWS CodePipeline access requests; read grants, the catalog and the audit trail.",
    "VERSION": "1",
    "SERVE_INCLUDE_SCHEMA": False,
    "SERVE_PERMISSIONS": ["rest_framework.permissions.AllowAny"],  # the schema describes, it reveals no data
    "COMPONENT_SPLIT_REQUEST": True,
    # <id:pk> path segments (accessrequests/core/ids.py): 1 to 18 digits.
    "PATH_CONVERTER_OVERRIDES": {"id": {"type": "integer", "minimum": 0, "maximum": 10**18 - 1}},
}
GATEHOUSE_API_MAX_BODY = env.int("GATEHOUSE_API_MAX_BODY", default=256 * 1024)

# SCIM 2.0 provisioning at /scim/v2/: the identity provider's bearer token (never stored in the database); SCIM is
# off while it is unset.
GATEHOUSE_SCIM_TOKEN = _secret("GATEHOUSE_SCIM_TOKEN", default="") or ""

# The Slack app: a bot token to post and update messages (chat:write, users:read, users:read.email, im:write), and
# the signing secret that proves an interactive callback came from Slack. Off while the bot token is unset.
SLACK_BOT_TOKEN = _secret("SLACK_BOT_TOKEN", default="") or ""
SLACK_SIGNING_SECRET = _secret("SLACK_SIGNING_SECRET", default="") or ""
SLACK_API_URL = env.str("SLACK_API_URL", default="https://slack.com/api/").rstrip("/") + "/"
# A pending request is announced again in its message's thread after this many minutes, then twice as long each
# time (at most a day apart), until it is decided or expires.
GATEHOUSE_SLACK_REMINDER_MINUTES = env.int("GATEHOUSE_SLACK_REMINDER_MINUTES", default=60)
# How long the link a Slack button answers with opens the decision page.
GATEHOUSE_SLACK_LINK_SECONDS = env.int("GATEHOUSE_SLACK_LINK_SECONDS", default=600)

# Access reviews: a campaign every GATEHOUSE_REVIEW_EVERY_DAYS (0: only when an admin starts one) over every
# live grant that lasts or has lasted longer than GATEHOUSE_REVIEW_MIN_AGE_DAYS, and every grant without an end.
GATEHOUSE_REVIEW_EVERY_DAYS = env.int("GATEHOUSE_REVIEW_EVERY_DAYS", default=90)
GATEHOUSE_REVIEW_MIN_AGE_DAYS = env.int("GATEHOUSE_REVIEW_MIN_AGE_DAYS", default=30)
# Access unused for this many days is flagged "revoke suggested" on the review.
GATEHOUSE_REVIEW_UNUSED_DAYS = env.int("GATEHOUSE_REVIEW_UNUSED_DAYS", default=90)
GATEHOUSE_REVIEW_DEADLINE_DAYS = env.int("GATEHOUSE_REVIEW_DEADLINE_DAYS", default=14)
# What happens to an item nobody reviewed by the deadline: "remind" (reminders go on) or "revoke" (the access ends).
GATEHOUSE_REVIEW_UNREVIEWED = env.str("GATEHOUSE_REVIEW_UNREVIEWED", default="remind")
if GATEHOUSE_REVIEW_UNREVIEWED not in ("remind", "revoke"):
    raise ImproperlyConfigured(
        f"GATEHOUSE_REVIEW_UNREVIEWED must be remind or revoke, not {GATEHOUSE_REVIEW_UNREVIEWED!r}"
    )
# Reviewers with open items are reminded after this many hours, then twice as long each time (at most weekly).
GATEHOUSE_REVIEW_REMINDER_HOURS = env.int("GATEHOUSE_REVIEW_REMINDER_HOURS", default=24)

# Break-glass: who may use it is named per approval rule; these bound every use.
GATEHOUSE_BREAK_GLASS_PER_DAY = env.int("GATEHOUSE_BREAK_GLASS_PER_DAY", default=3)
GATEHOUSE_BREAK_GLASS_REVIEW_HOURS = env.int("GATEHOUSE_BREAK_GLASS_REVIEW_HOURS", default=24)
