"""Settings of a project that runs django-mailer 2.3.2 (for tests/test_upgrade.py).

Used only by ``django_mailer_side.py``, in django-mailer's own virtualenv: it
never imports our package. The database and SMTP port come from the test.
"""

import json
import os

SECRET_KEY = "upgrade-test"
USE_TZ = True
TIME_ZONE = "UTC"
USE_I18N = True
LANGUAGE_CODE = "de"  # lazy subjects are translated when mail is sent
INSTALLED_APPS = ["django.contrib.contenttypes", "django.contrib.auth", "mailer"]
DATABASES = {"default": json.loads(os.environ["UPGRADE_DATABASE"])}
DEFAULT_AUTO_FIELD = "django.db.models.BigAutoField"

EMAIL_BACKEND = "mailer.backend.DbBackend"
MAILER_EMAIL_BACKEND = "django.core.mail.backends.smtp.EmailBackend"
EMAIL_HOST = "127.0.0.1"
EMAIL_PORT = int(os.environ.get("UPGRADE_SMTP_PORT", "25"))
EMAIL_TIMEOUT = 10
MAILER_LOCK_PATH = os.path.join(os.environ["UPGRADE_TMP"], "django-mailer-send")

DEFAULT_FROM_EMAIL = "site@example.com"
SERVER_EMAIL = "server@example.com"
ADMINS = [("Ada", "ada@example.com"), ("Bob", "bob@example.com")]
