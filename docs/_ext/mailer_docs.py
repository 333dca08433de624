"""Sphinx directives that keep the documentation in step with the code.

``.. setting:: MAILER_NAME`` documents a setting; its default is read from
``mailer.conf.MailerSettings``, never typed by hand. ``.. check:: mailer.E001``
documents a system check id found in ``mailer/checks/``.
``.. mailer-settings-summary::`` is a table of every setting, made from the code.

When the build ends, a setting or check id the code has and the documentation
lacks (or the other way round) is a warning, so ``sphinx-build -W`` fails.
"""

from __future__ import annotations

import inspect
import re
from typing import Any

from docutils import nodes
from sphinx import addnodes
from sphinx.application import Sphinx
from sphinx.environment import BuildEnvironment
from sphinx.util import logging
from sphinx.util.docutils import SphinxDirective

logger = logging.getLogger(__name__)

CHECK_ID = re.compile(r"mailer\.[EW]\d{3}")


def code_settings() -> dict[str, Any]:
    from mailer.conf import MailerSettings

    return {setting.name: setting for setting in MailerSettings.all_settings()}


def code_check_ids() -> set[str]:
    from mailer import checks

    return set(CHECK_ID.findall(inspect.getsource(checks)))


def literal(value: Any) -> str:
    """A default as a reader would write it in settings.py."""
    if isinstance(value, str):
        return f'"{value}"'
    if isinstance(value, tuple | list):
        return "[" + ", ".join(literal(item) for item in value) + "]"
    return repr(value)


def _documented(env: BuildEnvironment, kind: str) -> dict[str, str]:
    """``{name: docname}`` of the entries of ``kind`` documented so far."""
    if not hasattr(env, "mailer_documented"):
        env.mailer_documented = {}  # type: ignore[attr-defined]
    store: dict[str, dict[str, str]] = env.mailer_documented  # type: ignore[attr-defined]
    return store.setdefault(kind, {})


def parse_setting(env: BuildEnvironment, sig: str, signode: addnodes.desc_signature) -> str:
    name = sig.strip()
    setting = code_settings().get(name)
    signode += addnodes.desc_name(name, name)
    if setting is None:
        logger.warning("%s is not a setting of mailer.conf.MailerSettings", name, location=signode)
        return name
    default = " = " + literal(setting.default)
    signode += addnodes.desc_annotation(default, default)
    _documented(env, "setting")[name] = env.docname
    return name


def parse_check(env: BuildEnvironment, sig: str, signode: addnodes.desc_signature) -> str:
    check_id = sig.strip()
    signode += addnodes.desc_name(check_id, check_id)
    if check_id not in code_check_ids():
        logger.warning("%s is not a check id in mailer/checks/", check_id, location=signode)
    else:
        _documented(env, "check")[check_id] = env.docname
    return check_id


class SettingsSummary(SphinxDirective):
    """A table of every setting: name (linked to its entry), default, and the code's summary."""

    def run(self) -> list[nodes.Node]:
        table = nodes.table(classes=["mailer-settings"])
        group = nodes.tgroup(cols=3)
        table += group
        for width in (30, 25, 45):
            group += nodes.colspec(colwidth=width)
        head = nodes.thead()
        group += head
        head += self._row([nodes.Text("Setting"), nodes.Text("Default"), nodes.Text("Meaning")])
        body = nodes.tbody()
        group += body
        for name, setting in code_settings().items():
            ref = addnodes.pending_xref(
                "", refdomain="std", reftype="setting", reftarget=name, refexplicit=False
            )
            ref += nodes.literal(name, name)
            body += self._row(
                [ref, nodes.literal(text=literal(setting.default)), nodes.Text(setting.doc)]
            )
        return [table]

    @staticmethod
    def _row(cells: list[nodes.Node]) -> nodes.row:
        row = nodes.row()
        for cell in cells:
            entry = nodes.entry()
            paragraph = nodes.paragraph()
            paragraph += cell
            entry += paragraph
            row += entry
        return row


def purge(app: Sphinx, env: BuildEnvironment, docname: str) -> None:
    for kind in ("setting", "check"):
        found = _documented(env, kind)
        for key in [key for key, doc in found.items() if doc == docname]:
            del found[key]


def check_coverage(app: Sphinx, env: BuildEnvironment) -> None:
    for kind, wanted in (("setting", set(code_settings())), ("check", code_check_ids())):
        missing = sorted(wanted - set(_documented(env, kind)))
        if missing:
            logger.warning(
                "undocumented %s(s) (add a '.. %s::' entry): %s", kind, kind, ", ".join(missing)
            )


def setup(app: Sphinx) -> dict[str, Any]:
    app.add_object_type(
        "setting", "setting", indextemplate="pair: %s; setting", parse_node=parse_setting
    )
    app.add_object_type(
        "check", "check", indextemplate="pair: %s; system check", parse_node=parse_check
    )
    app.add_directive("mailer-settings-summary", SettingsSummary)
    app.connect("env-purge-doc", purge)
    app.connect("env-check-consistency", check_coverage)
    return {"version": "1", "parallel_read_safe": False, "parallel_write_safe": True}
