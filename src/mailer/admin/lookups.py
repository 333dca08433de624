"""The URL lookups the admin's lists accept: only those their own filters and links make.

Django's change list turns every query-string parameter it does not know
into a filter on the queryset. On a list of stored mail that is an oracle:
``?message_data__contains=reset/4f2a`` lists the row when the guess is right
and nothing when it is wrong, so anyone who may see the list could read a
body they may not see, one character at a time (and the same with
``__regex``, ``__startswith``, JSON key transforms...).

Each ModelAdmin of the app accepts exactly the parameters its list filters,
its date hierarchy and its own links produce -- ``state``, ``priority__exact``,
``when_added__year`` and so on -- whatever the user, superusers included.
Any other parameter is refused: Django raises ``DisallowedModelAdminLookup``
and answers 400.
"""

from __future__ import annotations

from typing import TYPE_CHECKING, Any

from django.contrib import admin
from django.contrib.admin.utils import get_fields_from_path
from django.db.models import Field
from django.http import HttpRequest

if TYPE_CHECKING:
    AdminBase = admin.ModelAdmin[Any]
else:  # a mixin; ModelAdmin is generic in the type stubs only
    AdminBase = object

DATE_PARTS = ("year", "month", "day")


class FilterLookupsOnly(AdminBase):
    """Accepts only the URL parameters the list's own filters and links use."""

    # Parameters that links of the app put in this list's URL, beyond its filters.
    link_lookups: tuple[str, ...] = ()

    def lookup_allowed(self, lookup: str, value: str, request: HttpRequest | None = None) -> bool:
        if request is None:
            # DJANGO_COMPAT(<6.0): Django 5.2 lets callers leave the request out. Without
            # it the filters cannot be told (get_list_filter takes it): refuse.
            return False
        return lookup in self.url_lookups(request)

    def url_lookups(self, request: HttpRequest) -> frozenset[str]:
        """Every query-string parameter this list accepts, besides Django's own (q, o, p...)."""
        allowed = set(self.link_lookups)
        if self.date_hierarchy:
            allowed.update(f"{self.date_hierarchy}__{part}" for part in DATE_PARTS)
        for item in self.get_list_filter(request):
            allowed.update(p for p in self._parameters_of(item, request) if p is not None)
        return frozenset(allowed)

    def _parameters_of(self, item: Any, request: HttpRequest) -> list[str | None]:
        """The parameters a ``list_filter`` entry reads, from the filter Django would make."""
        if isinstance(item, type) and issubclass(item, admin.SimpleListFilter):
            return [item.parameter_name]
        if isinstance(item, type) and issubclass(item, admin.ListFilter):
            return item(request, {}, self.model, self).expected_parameters()
        if isinstance(item, (list, tuple)):
            field, make = item
        else:
            field, make = item, admin.FieldListFilter.create
        path = None
        if not isinstance(field, Field):
            path = str(field)
            field = get_fields_from_path(self.model, path)[-1]
        spec: admin.ListFilter = make(field, request, {}, self.model, self, field_path=path)
        return spec.expected_parameters()
