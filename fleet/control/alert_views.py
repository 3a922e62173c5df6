"""REST for alerts and the health policy: viewers read, operators acknowledge, assign and
resolve alerts, supervisors change a site's health policy. Thin views over
``fleet.control.alerts`` and ``fleet.control.health``."""

from __future__ import annotations

import re
from typing import Any

from django.contrib.auth.models import User
from django.core.exceptions import ValidationError
from drf_spectacular.types import OpenApiTypes
from drf_spectacular.utils import OpenApiParameter, OpenApiResponse, extend_schema
from rest_framework import generics, permissions, serializers, status
from rest_framework.request import Request
from rest_framework.response import Response
from rest_framework.views import APIView

from fleet.api.sites import SiteScopedMixin, visible_or_404
from fleet.control import alerts, health
from fleet.control.filters import AlertFilter
from fleet.control.models import Alert, HealthPolicy
from fleet.mine.models import Site


class Needs(permissions.BasePermission):
    """Reading needs the view's ``read`` permission, anything else its ``write`` one."""

    def has_permission(self, request: Request, view: Any) -> bool:
        user = request.user
        if not (user and user.is_authenticated):
            return False
        safe = request.method in permissions.SAFE_METHODS
        return user.has_perm(view.read if safe else view.write)


class AlertEventSerializer(serializers.Serializer):
    at = serializers.DateTimeField()
    action = serializers.CharField()
    actor = serializers.CharField()
    detail = serializers.CharField()


class AlertSerializer(serializers.ModelSerializer):
    events = AlertEventSerializer(many=True, read_only=True)
    assigned_to = serializers.SlugRelatedField(slug_field="username", read_only=True)
    equipment_name = serializers.CharField(source="equipment.name", read_only=True)

    class Meta:
        model = Alert
        fields = [
            "id",
            "site",
            "equipment",
            "equipment_name",
            "kind",
            "severity",
            "status",
            "source",
            "inputs",
            "channel",
            "reason",
            "count",
            "first_seen_at",
            "last_seen_at",
            "assigned_to",
            "resolved_at",
            "verdict",
            "verdict_at",
            "command_ids",
            "events",
        ]


class AlertListView(SiteScopedMixin, generics.ListAPIView):
    """Alerts, newest activity first (paged), filtered by site, truck, status, severity, kind
    or source."""

    queryset = (
        Alert.objects.select_related("assigned_to", "equipment")
        .prefetch_related("events")
        .order_by("-last_seen_at", "-id")
    )
    serializer_class = AlertSerializer
    filterset_class = AlertFilter
    permission_classes = [Needs]
    read = write = "control.view_alert"


class AlertDetailView(SiteScopedMixin, generics.RetrieveAPIView):
    queryset = AlertListView.queryset
    serializer_class = AlertSerializer
    permission_classes = [Needs]
    read = write = "control.view_alert"


class NoteSerializer(serializers.Serializer):
    note = serializers.CharField(max_length=300, required=False, allow_blank=True, default="")


class VerdictSerializer(NoteSerializer):
    verdict = serializers.ChoiceField(
        choices=Alert.Verdict.choices,
        required=False,
        allow_blank=True,
        default="",
        help_text="confirmed (a real fault) or false_alarm: for a fault alert, a label the "
        "site's own fault head learns from",
    )


class AssignSerializer(NoteSerializer):
    assignee = serializers.SlugRelatedField(
        slug_field="username",
        queryset=User.objects.filter(is_active=True),
        help_text="The user name of who is to deal with it",
    )


ALERT_ID = OpenApiParameter("pk", OpenApiTypes.INT, OpenApiParameter.PATH, description="Alert id")


class AlertActionView(APIView):
    """One operator action on an alert. One view, three routes: ``action`` is acknowledge,
    assign or resolve."""

    permission_classes = [Needs]
    read, write = "control.view_alert", "control.change_alert"
    action = "acknowledge"

    @extend_schema(
        parameters=[ALERT_ID],
        request=VerdictSerializer,
        responses={
            200: AlertSerializer,
            409: OpenApiResponse(description="Not possible from the alert's status"),
        },
    )
    def post(self, request: Request, pk: int) -> Response:
        payload = (AssignSerializer if self.action == "assign" else VerdictSerializer)(
            data=request.data
        )
        payload.is_valid(raise_exception=True)
        alert = visible_or_404(Alert.objects, request.user, pk=pk)
        note = payload.validated_data["note"]
        try:
            if self.action == "assign":
                alert = alerts.assign_alert(
                    alert, payload.validated_data["assignee"], actor=request.user, note=note
                )
            elif self.action == "resolve":
                alert = alerts.resolve_alert(
                    alert, actor=request.user, note=note, verdict=payload.validated_data["verdict"]
                )
            else:
                alert = alerts.acknowledge_alert(
                    alert, actor=request.user, note=note, verdict=payload.validated_data["verdict"]
                )
        except ValidationError as error:
            return Response({"detail": error.messages[0]}, status=status.HTTP_409_CONFLICT)
        return Response(AlertSerializer(AlertListView.queryset.get(pk=alert.pk)).data)


class AlertAssignView(AlertActionView):
    action = "assign"

    @extend_schema(
        parameters=[ALERT_ID],
        request=AssignSerializer,
        responses={
            200: AlertSerializer,
            409: OpenApiResponse(description="Not possible from the alert's status"),
        },
    )
    def post(self, request: Request, pk: int) -> Response:
        return super().post(request, pk)


# --- the health policy ------------------------------------------------------------------------

FAULT_CLASS = re.compile(r"[a-z][a-z0-9_]{0,39}")


class HealthPolicySerializer(serializers.Serializer):
    thresholds = serializers.DictField(
        child=serializers.FloatField(min_value=0.0, max_value=1.0),
        required=False,
        help_text="Probability threshold per fault class; a class left out uses the threshold "
        "its model version was calibrated with",
    )
    consecutive = serializers.IntegerField(
        min_value=1,
        max_value=20,
        allow_null=True,
        required=False,
        help_text="Decisions in a row above the threshold; null: the model version's own rule",
    )
    severities = serializers.DictField(
        child=serializers.ChoiceField(choices=Alert.Severity.choices), required=False
    )
    actions = serializers.DictField(
        child=serializers.ChoiceField(choices=HealthPolicy.Action.choices), required=False
    )
    workshop_way_id = serializers.IntegerField(
        min_value=0, max_value=2**31 - 1, allow_null=True, required=False
    )
    effective = serializers.DictField(
        read_only=True, help_text="Per fault class, what is decided with (defaults filled in)"
    )
    updated_by = serializers.CharField(read_only=True, allow_null=True)
    updated_at = serializers.DateTimeField(read_only=True, allow_null=True)

    def validate(self, attrs: dict[str, Any]) -> dict[str, Any]:
        for name in ("thresholds", "severities", "actions"):
            bad = [key for key in attrs.get(name, {}) if not FAULT_CLASS.fullmatch(key)]
            if bad:
                raise serializers.ValidationError({name: [f"not a fault class: {bad[0]}"]})
        return attrs


def _policy_answer(policy: HealthPolicy) -> dict[str, Any]:
    return {
        "thresholds": policy.thresholds,
        "consecutive": policy.consecutive,
        "severities": policy.severities,
        "actions": policy.actions,
        "workshop_way_id": policy.workshop_way_id,
        "effective": health.effective_policy(policy),
        "updated_by": policy.updated_by.get_username() if policy.updated_by else None,
        "updated_at": policy.updated_at,
    }


SITE = OpenApiParameter("site_id", OpenApiTypes.UUID, OpenApiParameter.PATH, description="Site")


class HealthPolicyView(APIView):
    """A site's health policy: read by viewers, changed by supervisors (PATCH: the fields
    given replace theirs)."""

    permission_classes = [Needs]
    read, write = "control.view_healthpolicy", "control.change_healthpolicy"

    @extend_schema(parameters=[SITE], responses=HealthPolicySerializer)
    def get(self, request: Request, site_id: str) -> Response:
        site = visible_or_404(Site.objects, request.user, "", pk=site_id)
        return Response(_policy_answer(health.policy_of(site.pk)))

    @extend_schema(
        parameters=[SITE], request=HealthPolicySerializer, responses=HealthPolicySerializer
    )
    def patch(self, request: Request, site_id: str) -> Response:
        site = visible_or_404(Site.objects, request.user, "", pk=site_id)
        payload = HealthPolicySerializer(data=request.data, partial=True)
        payload.is_valid(raise_exception=True)
        policy = health.change_policy(site, actor=request.user, **payload.validated_data)
        return Response(_policy_answer(policy))
