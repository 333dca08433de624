"""Django settings for the benchmark's processes: ours, django-mailer's and post-office's.

Everything comes from the environment the orchestrator (bench/bench.py) sets:
BENCH_SIDE (ours|dm|po), BENCH_DB (sqlite|postgres|mariadb), BENCH_DB_NAME,
BENCH_SMTP_PORT, BENCH_TMP (SQLite file and lock), BENCH_EXTRA (JSON settings).
Every package gets the same database options and the same SMTP server, reached
through Django's SMTP backend.
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
APP = "post_office" if SIDE == "po" else "mailer"
INSTALLED_APPS = ["django.contrib.contenttypes", "django.contrib.auth", APP]
if SIDE == "po":  # post-office renders every subject and body as a Django template
    TEMPLATES = [{"BACKEND": "django.template.backends.django.DjangoTemplates", "APP_DIRS": True}]
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
PO_LOCK = os.path.join(TMP, f"lock-{SIDE}-{DB}-{DB_NAME}")  # post-office adds ".lock"

SMTP = "django.core.mail.backends.smtp.EmailBackend"
QUEUE_BACKEND = "post_office.EmailBackend" if SIDE == "po" else "mailer.backend.DbBackend"
# Django 6.1 deprecates EMAIL_BACKEND; MAILERS is the way there for the packages that know it
# (django-mailer 2.3.2 predates it and keeps the EMAIL_* settings).
if SIDE in ("ours", "po") and django.VERSION >= (6, 1):
    MAILERS = {
        "default": {"BACKEND": QUEUE_BACKEND},
        "smtp": {
            "BACKEND": SMTP,
            "OPTIONS": {"host": "127.0.0.1", "port": SMTP_PORT, "timeout": 30},
        },
    }
    if SIDE == "ours":
        MAILERS["default"]["OPTIONS"] = {"mailer": "smtp"}
    else:
        POST_OFFICE = {"DEFAULT_MAILER": "smtp", "LOCK_FILE_NAME": PO_LOCK}
else:
    EMAIL_BACKEND = QUEUE_BACKEND
    MAILER_EMAIL_BACKEND = SMTP
    POST_OFFICE = {"BACKENDS": {"default": SMTP}, "LOCK_FILE_NAME": PO_LOCK}
    EMAIL_HOST = "127.0.0.1"
    EMAIL_PORT = SMTP_PORT
    EMAIL_TIMEOUT = 30

# BENCH_EXTRA's POST_OFFICE entries add to the dictionary above (e.g. THREADS_PER_PROCESS).
EXTRA = json.loads(os.environ.get("BENCH_EXTRA", "{}"))
if SIDE == "po" and "POST_OFFICE" in EXTRA:
    POST_OFFICE = {**POST_OFFICE, **EXTRA.pop("POST_OFFICE")}
globals().update(EXTRA)
