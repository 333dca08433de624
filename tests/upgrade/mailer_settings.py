"""Settings of the same project after it switched to our package (tests/test_upgrade.py).

The database and the SMTP port come from the test. On Django 6.1 the project
uses MAILERS, before it the EMAIL_BACKEND style, like the rest of the suite.
"""

import json
import os

import django

SECRET_KEY = "upgrade-test"
USE_TZ = True
TIME_ZONE = "UTC"
USE_I18N = True
LANGUAGE_CODE = "de"  # as in django_mailer_settings: lazy subjects are German
INSTALLED_APPS = ["django.contrib.contenttypes", "django.contrib.auth", "mailer"]
DATABASES = {"default": json.loads(os.environ["UPGRADE_DATABASE"])}
DEFAULT_AUTO_FIELD = "django.db.models.BigAutoField"

_SMTP = {"host": "127.0.0.1", "port": int(os.environ.get("UPGRADE_SMTP_PORT", "25")), "timeout": 10}
if django.VERSION >= (6, 1):
    MAILERS = {
        "default": {"BACKEND": "mailer.backend.DbBackend", "OPTIONS": {"mailer": "smtp"}},
        "smtp": {"BACKEND": "django.core.mail.backends.smtp.EmailBackend", "OPTIONS": _SMTP},
    }
else:
    # DJANGO_COMPAT(<6.1): the only style before MAILERS.
    EMAIL_BACKEND = "mailer.backend.DbBackend"
    MAILER_EMAIL_BACKEND = "django.core.mail.backends.smtp.EmailBackend"
    EMAIL_HOST = _SMTP["host"]
    EMAIL_PORT = _SMTP["port"]
    EMAIL_TIMEOUT = _SMTP["timeout"]
MAILER_LOCK_PATH = os.path.join(os.environ["UPGRADE_TMP"], "mailer-send")

DEFAULT_FROM_EMAIL = "site@example.com"
SERVER_EMAIL = "server@example.com"
ADMINS = [("Ada", "ada@example.com"), ("Bob", "bob@example.com")]
