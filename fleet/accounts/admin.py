"""Users in the admin console: one with history (commands issued, zones drawn, promotions,
drains) is deactivated, never deleted, so what they did keeps their name."""

from __future__ import annotations

from django.contrib import admin, messages
from django.contrib.auth.admin import UserAdmin as DjangoUserAdmin
from django.contrib.auth.models import User
from django.db.models import QuerySet
from django.http import HttpRequest

from fleet.audit.admin import KeepsHistoryMixin

admin.site.unregister(User)


@admin.register(User)
class UserAdmin(KeepsHistoryMixin, DjangoUserAdmin):
    actions = ("deactivate",)
    keep_instead = (
        "deactivate them instead (the “Deactivate” action): they can no longer log in, and what "
        "they did keeps their name"
    )

    @admin.action(
        description="Deactivate the selected users (no more log-ins; kept with their history)",
        permissions=["change"],
    )
    def deactivate(self, request: HttpRequest, queryset: QuerySet[User]) -> None:
        me = request.user.pk or 0  # never a real id: an anonymous user gets no admin page
        if queryset.filter(pk=me).exists():
            self.message_user(
                request,
                "Not deactivated: not your own account (another administrator can).",
                messages.WARNING,
            )
        others = queryset.exclude(pk=me).filter(is_active=True)
        names = sorted(others.values_list("username", flat=True))
        # Sessions and API tokens of an inactive user no longer authenticate (ModelBackend and
        # DRF's TokenAuthentication both check is_active).
        User.objects.filter(username__in=names).update(is_active=False)
        if names:
            self.message_user(request, f"Deactivated {', '.join(names)}.", messages.SUCCESS)
