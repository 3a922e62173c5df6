"""Who sees which site: users are members of sites (``Site.members``), superusers see every
site. One rule for the REST API, the dashboard and the live feed: a site a user is not a member
of does not exist for them (404, not 403: its name and id are not confirmed either), and lists
hold only their sites' rows. What a member may do there is their role's business
(``fleet.accounts.roles``)."""

from __future__ import annotations

import uuid
from typing import Any, TypeVar

from django.contrib.auth.models import AbstractBaseUser, AnonymousUser
from django.db.models import Model, QuerySet
from django.http import Http404

from fleet.mine.models import Site

M = TypeVar("M", bound=Model)


def visible_sites(user: AbstractBaseUser | AnonymousUser) -> QuerySet[Site]:
    if not user.is_authenticated:
        return Site.objects.none()
    if user.is_superuser:
        return Site.objects.all()
    return Site.objects.filter(members=user)


def may_see_site(user: AbstractBaseUser | AnonymousUser, site_id: uuid.UUID | str) -> bool:
    return visible_sites(user).filter(pk=site_id).exists()


def scoped(queryset: QuerySet[M], user: Any, site_field: str = "site") -> QuerySet[M]:
    """``queryset`` narrowed to the rows of the sites ``user`` sees; ``site_field`` is the
    path to the row's site (``"site"``, ``"equipment__site"``; ``""`` for sites themselves)."""
    if user.is_superuser:
        return queryset
    lookup = f"{site_field}__in" if site_field else "pk__in"
    return queryset.filter(**{lookup: visible_sites(user).values("pk")})


def visible_or_404(queryset: QuerySet[M], user: Any, site_field: str = "site", **lookup: Any) -> M:
    """The one row ``lookup`` names, if it is on a site ``user`` sees; else 404."""
    row = scoped(queryset, user, site_field).filter(**lookup).first()
    if row is None:
        raise Http404(f"No {queryset.model._meta.verbose_name} matches the given query.")
    return row


class SiteScopedMixin:
    """For generic views and viewsets: the queryset holds the user's sites' rows only."""

    site_field = "site"

    def get_queryset(self) -> QuerySet:
        return scoped(super().get_queryset(), self.request.user, self.site_field)  # type: ignore[misc,attr-defined]
