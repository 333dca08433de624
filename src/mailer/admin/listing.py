"""Admin lists that stay fast on tables of millions of rows.

* A list reads only the start of each row's stored data (enough for the
  subject and recipients), not attachments.
* It counts at most ``COUNT_LIMIT`` rows, and says when there are more.
* The date hierarchy finds its years, months and days without Django's
  SELECT DISTINCT of a truncated date over every row.
"""

from __future__ import annotations

import datetime
from typing import TYPE_CHECKING, Any, Literal, cast

from django.contrib.admin.views.main import ChangeList
from django.core.paginator import Paginator
from django.db.models import (
    Case,
    Exists,
    IntegerField,
    Max,
    Min,
    QuerySet,
    TextField,
    Value,
    When,
)
from django.db.models.functions import Cast, Substr
from django.http import HttpRequest
from django.utils import timezone
from django.utils.functional import cached_property

from mailer.admin import display
from mailer.queue.log import MessageLogQuerySet
from mailer.queue.message import MessageQuerySet

if TYPE_CHECKING:
    PaginatorBase = Paginator[Any]
else:  # generic in the type stubs only
    PaginatorBase = Paginator

# Lists count at most this many rows; actions refuse "select all" beyond it.
COUNT_LIMIT = 10_000
# The date hierarchy lists at most this many years, months or days its own way.
MAX_PERIODS = 400


class CappedPaginator(PaginatorBase):
    """Counts at most ``COUNT_LIMIT`` + 1 rows; ``capped`` says there were more."""

    capped = False

    @cached_property
    def count(self) -> int:
        rows = cast(QuerySet[Any], self.object_list)
        found = rows.order_by().values("pk")[: COUNT_LIMIT + 1].count()
        self.capped = found > COUNT_LIMIT
        return min(found, COUNT_LIMIT)


def json_as_text(queryset: QuerySet[Any], *fields: str) -> QuerySet[Any]:
    """``queryset`` with each JSON field read as its text, ``<field>_text``, and not decoded.

    Django decodes a JSON column while it loads the row, and a value nested
    deeper than the decoder's recursion limit would fail the whole page; the
    admin decodes the text itself (``validity.stored_json``).
    """
    texts = {f"{name}_text": Cast(name, TextField()) for name in fields}
    read: QuerySet[Any] = queryset.defer(*fields).annotate(**texts)
    return read


class SummaryChangeList(ChangeList):
    """Reads only the start of each row's data: enough for subject and recipients."""

    def get_queryset(self, request: HttpRequest, exclude_parameters: Any = None) -> QuerySet[Any]:
        queryset: QuerySet[Any] = super().get_queryset(request, exclude_parameters)
        head = Substr("message_data", 1, display.SUMMARY_PREFIX)
        summarised: QuerySet[Any] = queryset.defer("message_data").annotate(data_head=head)
        return summarised

    def get_results(self, request: HttpRequest) -> None:
        """Django's results, and a "Show all" link only where it would show more rows.

        Without a full count (``show_full_result_count = False``, which keeps a
        list of millions cheap) Django offers "Show all" on every page, even an
        unfiltered one, where it links to the same rows. Here an unfiltered
        list counts as whole, and a filtered one is compared with the whole
        table's (capped) count.
        """
        super().get_results(request)
        if self.full_result_count is not None:
            return
        if not (self.get_filters_params() or self.query):
            self.full_result_count = self.result_count
            return
        whole = CappedPaginator(self.root_queryset, self.list_per_page)
        if whole.count == self.result_count and not whole.capped:
            self.full_result_count = self.result_count


class BoundedDates:
    """``datetimes()`` for the date hierarchy, without Django's costly way of listing dates.

    Django lists the years, months or days that hold rows with a SELECT
    DISTINCT of a truncated date over every row (on SQLite, a Python call
    per row). This lists the candidate periods between the first and the
    last date, then finds which hold rows in one query: for an indexed field
    (``probed``) with an EXISTS per period, each an index lookup; otherwise
    by numbering each row's period with a CASE of plain comparisons.
    """

    probed: frozenset[str] = frozenset()

    def datetimes(
        self,
        field_name: str,
        kind: Literal["year", "month", "week", "day", "hour", "minute", "second"],
        order: Literal["ASC", "DESC"] = "ASC",
        tzinfo: datetime.tzinfo | None = None,
    ) -> Any:
        queryset = cast(QuerySet[Any], self)
        django_way = super().datetimes(field_name, kind, order, tzinfo)  # type: ignore[misc]
        if kind not in ("year", "month", "day"):
            return django_way
        first, last = self._bounds(queryset, field_name)
        if first is None or last is None:
            return []
        zone = tzinfo or timezone.get_current_timezone()
        starts = _periods(first.astimezone(zone), last.astimezone(zone), kind)
        if len(starts) > MAX_PERIODS:
            return django_way
        ends = [*starts[1:], _next_period(starts[-1], kind)]
        rows = queryset.order_by()
        if field_name in self.probed:
            probes = {
                f"p{index}": Exists(
                    rows.filter(**{f"{field_name}__gte": start, f"{field_name}__lt": end})
                )
                for index, (start, end) in enumerate(zip(starts, ends, strict=True))
            }
            any_row = queryset.model.objects.using(queryset.db).order_by()
            found: dict[str, Any] = next(iter(any_row.annotate(**probes).values(*probes)[:1]), {})
            held = {index for index in range(len(starts)) if found.get(f"p{index}")}
        else:
            period = Case(
                *(When(**{f"{field_name}__lt": end}, then=Value(i)) for i, end in enumerate(ends)),
                default=Value(len(starts) - 1),
                output_field=IntegerField(),
            )
            held = set(rows.annotate(_period=period).values_list("_period", flat=True).distinct())
        chosen = [start for index, start in enumerate(starts) if index in held]
        return chosen if order == "ASC" else chosen[::-1]

    def _bounds(self, queryset: QuerySet[Any], field_name: str) -> tuple[Any, Any]:
        if field_name in self.probed:
            # Two index lookups: SQLite reads every row for a MIN and a MAX in one query.
            dates = queryset.values_list(field_name, flat=True)
            return dates.order_by(field_name).first(), dates.order_by(f"-{field_name}").first()
        bounds = queryset.aggregate(first=Min(field_name), last=Max(field_name))
        return bounds["first"], bounds["last"]


class MessageDatesQuerySet(BoundedDates, MessageQuerySet):
    """The queue, listed by ``when_added`` (not indexed: its periods are counted in one scan)."""


class LogDatesQuerySet(BoundedDates, MessageLogQuerySet):
    """The log, listed by ``when_attempted``, which is indexed."""

    probed = frozenset({"when_attempted"})


def _period_start(when: datetime.datetime, kind: str) -> datetime.datetime:
    naive = when.replace(tzinfo=None, hour=0, minute=0, second=0, microsecond=0)
    if kind in ("year", "month"):
        naive = naive.replace(day=1)
    if kind == "year":
        naive = naive.replace(month=1)
    return timezone.make_aware(naive, when.tzinfo)


def _next_period(start: datetime.datetime, kind: str) -> datetime.datetime:
    naive = start.replace(tzinfo=None)
    if kind == "year":
        naive = naive.replace(year=naive.year + 1)
    elif kind == "month":
        naive = naive.replace(year=naive.year + naive.month // 12, month=naive.month % 12 + 1)
    else:
        naive = naive + datetime.timedelta(days=1)
    return timezone.make_aware(naive, start.tzinfo)


def _periods(
    first: datetime.datetime, last: datetime.datetime, kind: str
) -> list[datetime.datetime]:
    starts = [_period_start(first, kind)]
    while len(starts) <= MAX_PERIODS:
        following = _next_period(starts[-1], kind)
        if following > last:
            break
        starts.append(following)
    return starts
