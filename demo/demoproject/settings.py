"""A small Django project that queues its mail with ``mailer``.

It uses Django 6.1's MAILERS setting when available, and the EMAIL_BACKEND
style otherwise. Mail is delivered to the SMTP server at MAILER_DEMO_SMTP_PORT
(the demo starts one on 127.0.0.1).
"""

import os
from pathlib import Path

import django

BASE_DIR = Path(__file__).resolve().parent.parent
VAR = Path(os.environ.get("MAILER_DEMO_VAR", BASE_DIR / "var"))
VAR.mkdir(parents=True, exist_ok=True)

SECRET_KEY = "demo-only-not-secret"
DEBUG = True
ALLOWED_HOSTS = ["127.0.0.1", "localhost"]
USE_TZ = True
TIME_ZONE = "UTC"

INSTALLED_APPS = [
    "django.contrib.admin",
    "django.contrib.auth",
    "django.contrib.contenttypes",
    "django.contrib.sessions",
    "django.contrib.messages",
    "django.contrib.staticfiles",
    "mailer",
]
MIDDLEWARE = [
    "django.middleware.security.SecurityMiddleware",
    "django.contrib.sessions.middleware.SessionMiddleware",
    "django.middleware.common.CommonMiddleware",
    "django.middleware.csrf.CsrfViewMiddleware",
    "django.contrib.auth.middleware.AuthenticationMiddleware",
    "django.contrib.messages.middleware.MessageMiddleware",
]
ROOT_URLCONF = "demoproject.urls"
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
STATIC_URL = "static/"
DATABASES = {
    "default": {
        "ENGINE": "django.db.backends.sqlite3",
        "NAME": VAR / "demo.sqlite3",
        "OPTIONS": {"init_command": "PRAGMA journal_mode=WAL;", "timeout": 20},
    }
}

DEFAULT_FROM_EMAIL = "Demo Shop <shop@example.com>"
SERVER_EMAIL = "alerts@example.com"
# DJANGO_COMPAT(<6.0): ADMINS was a list of (name, address) pairs.
ADMINS = ["ops@example.com"] if django.VERSION >= (6, 0) else [("Ops", "ops@example.com")]
SMTP_PORT = int(os.environ.get("MAILER_DEMO_SMTP_PORT", "2525"))

if django.VERSION >= (6, 1):
    MAILERS = {
        # Everything Django sends goes on the queue...
        "default": {"BACKEND": "mailer.backend.DbBackend", "OPTIONS": {"mailer": "smtp"}},
        # ...and is delivered by this one.
        "smtp": {
            "BACKEND": "django.core.mail.backends.smtp.EmailBackend",
            "OPTIONS": {"host": "127.0.0.1", "port": SMTP_PORT, "timeout": 10},
        },
    }
else:  # DJANGO_COMPAT(<6.1)
    EMAIL_BACKEND = "mailer.backend.DbBackend"
    MAILER_EMAIL_BACKEND = "django.core.mail.backends.smtp.EmailBackend"
    EMAIL_HOST = "127.0.0.1"
    EMAIL_PORT = SMTP_PORT

MAILER_LOCK_PATH = str(VAR / "send_mail")
