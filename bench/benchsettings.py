"""Django settings for the benchmark's processes, ours and django-mailer's alike.

Everything comes from the environment the orchestrator (bench/bench.py) sets:
BENCH_SIDE (ours|dm), BENCH_DB (sqlite|postgres|mariadb), BENCH_DB_NAME,
BENCH_SMTP_PORT, BENCH_TMP (SQLite file and lock), BENCH_EXTRA (JSON settings).
Both packages get the same database options and the same SMTP server.
"""

import json
import os

import django

SIDE = os.environ.get("BENCH_SIDE", "ours")
DB = os.environ.get("BENCH_DB", "sqlite")
DB_NAME = os.environ.get("BENCH_DB_NAME", f"bench_{SIDE}")
TMP = os.environ.get("BENCH_TMP", "/tmp")
SMTP_PORT = int(os.environ.get("BENCH_SMTP_PORT", "25"))

SECRET_KEY = "benchmark-only"
DEBUG = False
USE_TZ = True
TIME_ZONE = "UTC"
INSTALLED_APPS = ["django.contrib.contenttypes", "django.contrib.auth", "mailer"]
DEFAULT_AUTO_FIELD = "django.db.models.BigAutoField"
LOGGING_CONFIG = None

if DB == "postgres":
    DATABASES = {
        "default": {
            "ENGINE": "django.db.backends.postgresql",
            "NAME": DB_NAME,
            "USER": "postgres",
            "HOST": "127.0.0.1",
            "PORT": "5432",
        }
    }
elif DB == "mariadb":
    DATABASES = {
        "default": {
            "ENGINE": "django.db.backends.mysql",
            "NAME": DB_NAME,
            "USER": "root",
            "PASSWORD": "",
            "HOST": "127.0.0.1",
            "PORT": "3306",
            "OPTIONS": {"charset": "utf8mb4"},
        }
    }
else:
    DATABASES = {
        "default": {
            "ENGINE": "django.db.backends.sqlite3",
            "NAME": os.path.join(TMP, f"{DB_NAME}.sqlite3"),
            "OPTIONS": {"init_command": "PRAGMA journal_mode=WAL;", "timeout": 20},
        }
    }

DEFAULT_FROM_EMAIL = "bench@example.com"
MAILER_LOCK_PATH = os.path.join(TMP, f"lock-{SIDE}-{DB}-{DB_NAME}")

if SIDE == "ours" and django.VERSION >= (6, 1):
    # Django 6.1 deprecates EMAIL_BACKEND; MAILERS is the way there.
    MAILERS = {
        "default": {"BACKEND": "mailer.backend.DbBackend", "OPTIONS": {"mailer": "smtp"}},
        "smtp": {
            "BACKEND": "django.core.mail.backends.smtp.EmailBackend",
            "OPTIONS": {"host": "127.0.0.1", "port": SMTP_PORT, "timeout": 30},
        },
    }
else:
    EMAIL_BACKEND = "mailer.backend.DbBackend"
    MAILER_EMAIL_BACKEND = "django.core.mail.backends.smtp.EmailBackend"
    EMAIL_HOST = "127.0.0.1"
    EMAIL_PORT = SMTP_PORT
    EMAIL_TIMEOUT = 30

globals().update(json.loads(os.environ.get("BENCH_EXTRA", "{}")))
