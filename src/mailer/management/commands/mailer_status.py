"""``manage.py mailer_status``: the queue's health, for people and for monitoring.

Exit status: 0 when every limit given holds, 2 when one does not (the
reasons go to stderr), 1 on any other error (such as a database that cannot
be reached).
"""

from __future__ import annotations

import datetime
import json
from argparse import ArgumentParser
from typing import Any

from django.core.management.base import CommandError
from django.utils.translation import ngettext

from mailer.conf import settings
from mailer.management.base import MailerCommand
from mailer.queue.health import STATES, Attempts, Health, check
from mailer.runner.lock import LockHolder, holder
from mailer.runner.ratelimit import QuotaUse, quota_use

ALERT = 2


class Command(MailerCommand):
    help = (
        "Show the queue's health: messages by state, how long the oldest due message has "
        "waited, failed attempts and refused recipients in the last hour and day, workers, "
        "send_mail runs, the quotas used. Exits with status 2 when a limit given "
        "(--max-age, --max-failed, --min-workers, --max-run-age) is crossed."
    )

    def add_arguments(self, parser: ArgumentParser) -> None:
        super().add_arguments(parser)
        parser.add_argument("--json", action="store_true", help="Print one JSON object.")
        parser.add_argument(
            "--max-age",
            type=float,
            metavar="SECONDS",
            help="Exit with 2 if the oldest due message has waited longer than SECONDS.",
        )
        parser.add_argument(
            "--max-failed",
            type=int,
            metavar="N",
            help="Exit with 2 if more than N messages are failed.",
        )
        parser.add_argument(
            "--min-workers",
            type=int,
            metavar="N",
            help="Exit with 2 if fewer than N runmailer workers sent a heartbeat within "
            "MAILER_LEASE_SECONDS.",
        )
        parser.add_argument(
            "--max-run-age",
            type=float,
            metavar="SECONDS",
            help="Exit with 2 if no send_mail run, send_all() or Tasks drain finished within "
            "SECONDS (a cron that stopped).",
        )
        parser.add_argument(
            "--database", default="default", help="Database alias holding the queue."
        )

    def handle(self, *args: Any, **options: Any) -> None:
        health = check(using=options["database"])
        problems = limits_crossed(health, options)
        lock = lock_status()
        quotas = quota_use(options["database"])
        if options["json"]:
            found = {"lock": lock_json(lock), "quotas": [quota_json(q) for q in quotas]}
            self.stdout.write(
                json.dumps({**health.as_json(), **found, "problems": problems}, indent=2)
            )
        elif self.verbosity >= 1:
            lines = [report(health), *(quota_line(q) for q in quotas), lock_line(lock)]
            self.stdout.write("\n".join(lines))
        if problems:
            raise CommandError("; ".join(problems), returncode=ALERT)


def limits_crossed(health: Health, options: dict[str, Any]) -> list[str]:
    problems = []
    max_age, age = options.get("max_age"), health.oldest_due_age
    if max_age is not None and age is not None and age > max_age:
        problems.append(
            f"the oldest due message has waited {age:.0f} s, more than --max-age {max_age:g}"
        )
    max_failed, failed = options.get("max_failed"), health.states["failed"]
    if max_failed is not None and failed > max_failed:
        problems.append(f"{failed} messages failed, more than --max-failed {max_failed}")
    min_workers, alive = options.get("min_workers"), health.alive_workers
    if min_workers is not None and alive < min_workers:
        problems.append(f"{alive} workers alive, fewer than --min-workers {min_workers}")
    max_run_age, run_age = options.get("max_run_age"), health.last_run_age
    if max_run_age is not None:
        if run_age is None:
            problems.append(f"no run has finished, --max-run-age {max_run_age:g}")
        elif run_age > max_run_age:
            problems.append(
                f"the last run finished {run_age:.0f} s ago, "
                f"more than --max-run-age {max_run_age:g}"
            )
    return problems


def report(health: Health) -> str:
    lines = ["queue: " + ", ".join(f"{health.states[s]} {s}" for s in STATES)]
    if health.oldest_due_at is None:
        lines.append("oldest due: none")
    else:
        lines.append(
            f"oldest due: waiting {_duration(health.oldest_due_age or 0.0)}, "
            f"since {health.oldest_due_at.isoformat(timespec='seconds')}"
        )
    lines.append(f"last hour: {_attempts(health.last_hour)}")
    lines.append(f"last day: {_attempts(health.last_day)}")
    lines.append(f"workers: {health.alive_workers} alive")
    for w in health.workers:
        state = "" if w.alive else ", not alive"
        lines.append(
            f"  {w.name} ({w.hostname}, pid {w.pid}): {w.concurrency} connection(s), "
            f"last heartbeat {_ago(health, w.heartbeat_at)} ago{state}"
        )
    if health.runs:
        lines.append(f"runs: last finished {_ago(health, health.runs[0].finished_at)} ago")
    else:
        lines.append("runs: none finished (send_mail, send_all(), Tasks drains)")
    for r in health.runs:
        done = f"{r.kind} on {r.hostname} (pid {r.pid}): finished {_ago(health, r.finished_at)} ago"
        if r.delivered_at is None:
            lines.append(f"  {done}; nothing delivered yet")
        else:
            lines.append(
                f"  {done}; last delivery {_ago(health, r.delivered_at)} ago: "
                f"{r.sent} sent, {r.deferred} deferred, {r.failed} failed"
            )
    return "\n".join(lines)


def _ago(health: Health, when: datetime.datetime) -> str:
    return _duration(max((health.now - when).total_seconds(), 0.0))


def quota_json(use: QuotaUse) -> dict[str, Any]:
    return {
        "alias": use.alias,
        "per_second": use.quota.per_second,
        "per_day": use.quota.per_day,
        "used_last_24h": use.used_today,
    }


def quota_line(use: QuotaUse) -> str:
    """``quota ses: 1200 of 50000 in the last 24 h, 14/s``."""
    parts = []
    if use.quota.per_day is not None:
        parts.append(f"{use.used_today} of {use.quota.per_day} in the last 24 h")
    if use.quota.per_second is not None:
        parts.append(f"{use.quota.per_second:g}/s")
    return f"quota {use.alias}: {', '.join(parts)}"


def lock_status() -> tuple[str, LockHolder | None] | None:
    """The send_mail lock's path and its holder (None when MAILER_USE_FILE_LOCK is off)."""
    if not settings.USE_FILE_LOCK:
        return None
    path = settings.lock_file
    return path, holder(path)


def lock_json(lock: tuple[str, LockHolder | None] | None) -> dict[str, Any] | None:
    if lock is None:
        return None
    path, found = lock
    if found is None:
        return {"path": path, "holder": None}
    about = {"pid": found.pid, "uid": found.uid, "user": found.user_name}
    return {"path": path, "holder": {**about, "other_user": found.is_other_user}}


def lock_line(lock: tuple[str, LockHolder | None] | None) -> str:
    if lock is None:
        return "send_mail lock: not used (MAILER_USE_FILE_LOCK is False)"
    path, found = lock
    if found is None:
        return f"send_mail lock: free ({path})"
    line = f"send_mail lock: held by {found} ({path})"
    if found.is_other_user:
        line += "; a process of another user: send_mail of this user refuses to run"
    return line


def _attempts(window: Attempts) -> str:
    rate = window.failure_rate
    share = f" ({rate:.1%})" if rate is not None else ""
    attempts = ngettext("%(count)d attempt", "%(count)d attempts", window.total)
    refused = ngettext(
        "%(count)d recipient refused", "%(count)d recipients refused", window.refused
    )
    line = f"{attempts % {'count': window.total}}, {window.failed} deferred or failed{share}"
    return f"{line}, {refused % {'count': window.refused}}"


def _duration(seconds: float) -> str:
    if seconds < 120:
        return f"{seconds:.0f} s"
    if seconds < 7200:
        return f"{seconds / 60:.0f} min"
    if seconds < 172800:
        return f"{seconds / 3600:.0f} h"
    return f"{seconds / 86400:.0f} d"
