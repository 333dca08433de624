"""Sphinx configuration. Build: sphinx-build -W --keep-going -b html docs docs/_build/html"""

import sys
from pathlib import Path

import django
from django.conf import settings

HERE = Path(__file__).resolve().parent
sys.path[:0] = [str(HERE.parent / "src"), str(HERE / "_ext")]

# autodoc imports mailer's models: Django needs settings, and nothing more than this.
settings.configure(
    INSTALLED_APPS=["django.contrib.contenttypes", "mailer"],
    DATABASES={"default": {"ENGINE": "django.db.backends.sqlite3", "NAME": ":memory:"}},
    USE_TZ=True,
)
django.setup()

import mailer  # noqa: E402

project = "django-mailroom"  # the distribution; the package it installs is mailer
author = "The django-mailroom authors"
copyright = "The django-mailroom authors"
release = version = mailer.__version__

extensions = ["sphinx.ext.autodoc", "mailer_docs"]
exclude_patterns = ["_build"]
default_role = "py:obj"  # `mailer.send_mail` links to the API reference
# A reference to something of mailer's that is not documented is an error; the
# standard library's and Django's types (in signatures) are not linked.
nitpicky = True
nitpick_ignore_regex = [(r"py:.*", r"(?!mailer\b).*")]

autodoc_member_order = "bysource"
autodoc_typehints = "description"
autodoc_typehints_description_target = "documented"

html_theme = "furo"
html_title = f"django-mailroom {release}"
html_static_path: list[str] = []
