"""Settings for the test suite. ``MAILER_TEST_DB`` picks the database: sqlite, postgres, mariadb."""

import atexit
import json
import os
import shutil
import tempfile

import django

SECRET_KEY = "tests-only"
USE_TZ = True
# Logging the test admin in hashes a password per test: the fast hasher, as Django advises.
PASSWORD_HASHERS = ["django.contrib.auth.hashers.MD5PasswordHasher"]
TIME_ZONE = "UTC"
INSTALLED_APPS = [
    "django.contrib.admin",
    "django.contrib.auth",
    "django.contrib.contenttypes",
    "django.contrib.sessions",
    "django.contrib.messages",
    "mailer",
]
MIDDLEWARE = [
    "django.contrib.sessions.middleware.SessionMiddleware",
    "django.contrib.auth.middleware.AuthenticationMiddleware",
    "django.contrib.messages.middleware.MessageMiddleware",
]
ROOT_URLCONF = "tests.urls"
TEMPLATES = [
    {
        "BACKEND": "django.template.backends.django.DjangoTemplates",
        "APP_DIRS": True,
        "OPTIONS": {
            "context_processors": [
                "django.template.context_processors.request",
                "django.contrib.auth.context_processors.auth",
                "django.contrib.messages.context_processors.messages",
            ]
        },
    }
]

DB = os.environ.get("MAILER_TEST_DB", "sqlite")
# Django's backends with a quicker flush between transactional tests (tests/backends).
# Worker processes started by the tests connect to the test database itself.
FORCED_NAME = os.environ.get("MAILER_TEST_DB_NAME")
SMTP_PORT = int(os.environ.get("MAILER_TEST_SMTP_PORT", "25"))
if DB == "postgres":
    DATABASES = {
        "default": {
            "ENGINE": "tests.backends.postgresql",
            "NAME": FORCED_NAME or "test",
            "USER": os.environ.get("PGUSER", "postgres"),
            "HOST": "127.0.0.1",
            "PORT": "5432",
            "TEST": {"NAME": f"test_mailer_{os.getpid()}"},
        }
    }
elif DB == "mariadb":
    DATABASES = {
        "default": {
            "ENGINE": "tests.backends.mysql",
            "NAME": FORCED_NAME or "test",
            "USER": "root",
            "PASSWORD": "",
            "HOST": "127.0.0.1",
            "PORT": "3306",
            "OPTIONS": {"charset": "utf8mb4"},
            "TEST": {"NAME": f"test_mailer_{os.getpid()}", "CHARSET": "utf8mb4"},
        }
    }
else:
    # A file, not :memory:, so that worker processes in the tests share it.
    DATABASES = {
        "default": {
            "ENGINE": "tests.backends.sqlite3",
            "NAME": FORCED_NAME
            or os.path.join(tempfile.gettempdir(), f"mailer-tests-{os.getpid()}.sqlite3"),
            "OPTIONS": {"init_command": "PRAGMA journal_mode=WAL;", "timeout": 20},
            "TEST": {
                "NAME": os.path.join(tempfile.gettempdir(), f"mailer-tests-{os.getpid()}.sqlite3")
            },
        }
    }

DEFAULT_FROM_EMAIL = "site@example.com"
SERVER_EMAIL = "server@example.com"
ADMINS = [("Ada", "ada@example.com"), ("Bob", "bob@example.com")]
MANAGERS = ["carol@example.com"]

# Configuration style: "mailers" (Django 6.1's MAILERS) or "legacy" (EMAIL_BACKEND
# plus MAILER_EMAIL_BACKEND). The SMTP server the tests start listens on a port
# chosen at run time; the smtp fixture points these settings at it.
STYLE = os.environ.get("MAILER_TEST_STYLE") or ("mailers" if django.VERSION >= (6, 1) else "legacy")
# Django's test set-up replaces every backend with locmem; tests/conftest.py puts
# these back (TEST_MAILERS) before each test.
TEST_MAILERS = {
    "default": {"BACKEND": "mailer.backend.DbBackend", "OPTIONS": {"mailer": "smtp"}},
    "smtp": {
        "BACKEND": "django.core.mail.backends.smtp.EmailBackend",
        "OPTIONS": {"host": "127.0.0.1", "port": SMTP_PORT, "timeout": 10},
    },
}
if STYLE == "mailers":
    MAILERS = TEST_MAILERS
else:
    # DJANGO_COMPAT(<6.1): the only style before MAILERS.
    EMAIL_BACKEND = "mailer.backend.DbBackend"
    MAILER_EMAIL_BACKEND = "django.core.mail.backends.smtp.EmailBackend"
    EMAIL_HOST = "127.0.0.1"
    EMAIL_PORT = SMTP_PORT
    EMAIL_TIMEOUT = 10
# The send_mail lock in a directory of this test run's own (mode 0700): the lock refuses
# a directory that others may write, such as the temp directory itself.
MAILER_LOCK_PATH = os.environ.get("MAILER_TEST_LOCK_PATH")
if not MAILER_LOCK_PATH:
    _lock_dir = os.path.join(tempfile.gettempdir(), f"mailer-tests-{os.getpid()}")
    os.makedirs(_lock_dir, mode=0o700, exist_ok=True)
    atexit.register(shutil.rmtree, _lock_dir, True)  # worker processes are gone by then
    MAILER_LOCK_PATH = os.path.join(_lock_dir, "send_mail")
MAILER_RETRY_BACKOFF = 60

LOGGING_CONFIG = None

# Django Tasks' database backend, where it is installed (scripts/test.sh installs it, and on
# Django 5.2 the django-tasks backport): tests marked "tasks" run the drain task through
# its worker. Nothing else enqueues tasks unless MAILER_TASKS_ENQUEUE_ON_COMMIT is set.
try:
    if django.VERSION < (6, 0):  # DJANGO_COMPAT(<6.0): Tasks come from the backport
        import django_tasks  # noqa: F401
    import django_tasks_db  # noqa: F401
except ImportError:
    pass
else:
    if django.VERSION < (6, 0):  # DJANGO_COMPAT(<6.0)
        INSTALLED_APPS.append("django_tasks")
    INSTALLED_APPS.append("django_tasks_db")
    TASKS = {"default": {"BACKEND": "django_tasks_db.DatabaseBackend"}}

# Worker processes started by the tests get extra settings as JSON.
globals().update(json.loads(os.environ.get("MAILER_TEST_SETTINGS", "{}")))
DJANGO_VERSION = django.VERSION
