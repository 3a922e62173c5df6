"""The REST API's conventions, in one place: how a request's parameters are declared and
checked, how a refusal reads, and how the OpenAPI schema documents both.

Query parameters are declared once, as classes, and that declaration is both the check and the
documentation:

- A filter of a list (``?site=``, ``?status=``): a ``fleet.api.FilterSet`` (django-filter's,
  refusing an empty value) in the app's ``filters.py``, set as the view's ``filterset_class``. ``DjangoFilterBackend`` (the default
  filter backend) applies it and drf-spectacular documents it.
- Any other parameter (a time range, a polygon, a tolerance, a cursor): a parameter serializer,
  a ``QueryParameters`` subclass named ``...Parameters``, read in the view with
  ``query_parameters(request, TrackParameters)`` and documented with
  ``@extend_schema(parameters=[TrackParameters])``.
- Paging: ``LimitOffsetPagination`` below, the default paginator, checks ``limit`` and
  ``offset`` the same way.

A bad value is a 400 whose body names each parameter (or body field) at fault, with a list of
messages: ``{"limit": ["A valid integer is required."]}``; nested fields are named with dots
(``properties.name``). Other refusals carry ``{"detail": "..."}``. A malformed path parameter
is a 404 (the route does not match, or names no row), in JSON on every ``/api/`` path.

``fleet.api.schema.AutoSchema`` (``DEFAULT_SCHEMA_CLASS``) documents the refusals every operation can answer from
what the view declares: 400 where it takes query parameters or a body, 401 and 403 unless it
allows anyone, 404 where its path names something, 415 where it reads a body; a view adds its
own (409, 503) with ``extend_schema(responses={409: OpenApiResponse(description=...)})`` and the
error body is filled in here.
"""

from __future__ import annotations

from collections.abc import Mapping
from datetime import datetime, timedelta
from typing import Any

import django_filters
from django import forms
from django.http import HttpRequest, HttpResponse, JsonResponse
from django.utils import timezone
from django.views import defaults
from rest_framework import pagination, serializers
from rest_framework.exceptions import ValidationError
from rest_framework.request import Request
from rest_framework.response import Response
from rest_framework.settings import api_settings
from rest_framework.views import exception_handler as drf_exception_handler

# --- parameters ------------------------------------------------------------------------------

# The largest value of a PostgreSQL integer column: a bound for parameters compared with one.
INT_MAX = 2**31 - 1


class FilterSet(django_filters.FilterSet):
    """django-filter's ``FilterSet``, refusing a filter given with no value (``?site=``), which
    django-filter would read as no filter at all: the schema says what a value must be."""

    def is_valid(self) -> bool:
        valid = super().is_valid()
        for name in self.filters:
            values = self.data.getlist(name) if hasattr(self.data, "getlist") else []
            if any(not value.strip() for value in values):
                self.form.add_error(name, "This field may not be blank.")
                valid = False
        return valid


class IntegerFilter(django_filters.NumberFilter):
    """A filter on an integer column: ``1.5`` is refused, not rounded."""

    field_class = forms.IntegerField


class _StrictBooleanField(forms.Field):
    """``true`` / ``false`` (or 1 / 0); anything else is refused. django-filter's own boolean
    field reads an unknown value as "no filter", which would answer everything."""

    def to_python(self, value: Any) -> bool | None:
        if value in (None, ""):
            return None
        text = str(value).strip().lower()
        if text in ("true", "1"):
            return True
        if text in ("false", "0"):
            return False
        raise forms.ValidationError("Enter true or false.")


class BooleanFilter(django_filters.BooleanFilter):
    """A boolean query parameter that refuses what is not one (a 400 naming it)."""

    field_class = _StrictBooleanField


class QueryParameters(serializers.Serializer):
    """The base of parameter serializers: a plain serializer over ``request.query_params``. A
    parameter whose name is a Python keyword is declared with a trailing underscore (``from_``
    reads ``?from=``)."""

    def get_fields(self) -> dict[str, serializers.Field]:
        return {name.removesuffix("_"): field for name, field in super().get_fields().items()}


def query_parameters(
    request: Request, parameters: type[serializers.Serializer], **context: Any
) -> dict[str, Any]:
    """The request's query parameters, checked by ``parameters``; a 400 naming each bad one."""
    serializer = parameters(data=request.query_params, context={"request": request, **context})
    serializer.is_valid(raise_exception=True)
    return dict(serializer.validated_data)


class AwareDateTimeField(serializers.DateTimeField):
    """An ISO 8601 time with its offset (RFC 3339, as OpenAPI's ``date-time``). A ``+`` typed
    into a URL by hand arrives as a space, so a space before the offset is read as a ``+``."""

    default_error_messages = {
        "naive": "An ISO 8601 time with a time zone is required, e.g. 2026-11-22T10:00:00Z.",
    }

    def to_internal_value(self, value: Any) -> datetime:
        if isinstance(value, str):
            value = value.strip().replace(" ", "+")
        return super().to_internal_value(value)

    def enforce_timezone(self, value: datetime) -> datetime:
        if timezone.is_naive(value):
            self.fail("naive")
        return super().enforce_timezone(value)


class TimeRangeParameters(QueryParameters):
    """``?from=&to=`` (``to`` defaults to now); a subclass bounds the span with ``longest``."""

    from_ = AwareDateTimeField(help_text="ISO 8601 with a time zone, e.g. 2026-11-22T10:00:00Z")
    to = AwareDateTimeField(default=timezone.now, help_text="Default: now")

    longest: timedelta | None = None

    def validate(self, attrs: dict[str, Any]) -> dict[str, Any]:
        if attrs["to"] <= attrs["from"]:
            raise serializers.ValidationError({"to": "Must be after 'from'."})
        if self.longest is not None and attrs["to"] - attrs["from"] > self.longest:
            raise serializers.ValidationError(
                {"to": f"At most {self.longest.days} days after 'from'."}
            )
        return attrs


def validated(name: str, field: serializers.Field, raw: Any) -> Any:
    """One parameter checked by a serializer field, outside a serializer; a 400 naming it."""
    try:
        return field.run_validation(raw)
    except ValidationError as error:
        raise ValidationError({name: error.detail}) from None


class LimitOffsetPagination(pagination.LimitOffsetPagination):
    """DRF's limit / offset paging, refusing a bad value (DRF's own falls back to the default
    without a word) and documenting the bounds."""

    max_limit = 1000

    def _limit_field(self) -> serializers.IntegerField:
        return serializers.IntegerField(min_value=1, max_value=self.max_limit)

    def get_limit(self, request: Request) -> int | None:
        raw = request.query_params.get(self.limit_query_param)
        if raw is None:
            return self.default_limit
        return validated(self.limit_query_param, self._limit_field(), raw)

    def get_offset(self, request: Request) -> int:
        raw = request.query_params.get(self.offset_query_param)
        if raw is None:
            return 0
        return validated(self.offset_query_param, serializers.IntegerField(min_value=0), raw)

    def get_schema_operation_parameters(self, view: Any) -> list[dict[str, Any]]:
        parameters = super().get_schema_operation_parameters(view)
        bounds = {
            self.limit_query_param: {"minimum": 1, "maximum": self.max_limit},
            self.offset_query_param: {"minimum": 0},
        }
        for parameter in parameters:
            parameter["schema"].update(bounds.get(parameter["name"], {}))
        return parameters


# --- errors ----------------------------------------------------------------------------------


def _messages(detail: Any, name: str, into: dict[str, list[str]]) -> None:
    if isinstance(detail, Mapping):
        for key, value in detail.items():
            _messages(value, f"{name}.{key}" if name else str(key), into)
    elif isinstance(detail, list | tuple) and any(
        isinstance(item, Mapping | list | tuple) for item in detail
    ):
        for index, item in enumerate(detail):
            if item:
                _messages(item, f"{name}.{index}" if name else str(index), into)
    else:
        items = detail if isinstance(detail, list | tuple) else [detail]
        into.setdefault(name or api_settings.NON_FIELD_ERRORS_KEY, []).extend(map(str, items))


def exception_handler(exc: Exception, context: dict[str, Any]) -> Response | None:
    """DRF's handler, with every validation error in one shape: each parameter or field named
    (nested ones with dots) with a list of messages."""
    response = drf_exception_handler(exc, context)
    if response is not None and isinstance(exc, ValidationError):
        flat: dict[str, list[str]] = {}
        _messages(response.data, "", flat)
        response.data = flat
    return response


def not_found(request: HttpRequest, exception: Exception | None = None) -> HttpResponse:
    """``handler404``: a path under ``/api/`` that matches no route gets the API's JSON error,
    anything else Django's page."""
    if request.path.startswith("/api/"):
        return JsonResponse({"detail": "Not found."}, status=404)
    return defaults.page_not_found(request, exception)
