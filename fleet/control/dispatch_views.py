"""REST for dispatch (fleet.control.dispatching): the plan and assignments (viewers), a loading
unit down or back, a re-plan, a truck assigned by hand or released (operators), the dispatcher
on or off for a site (supervisors). Thin views."""

from __future__ import annotations

from typing import Any

from drf_spectacular.types import OpenApiTypes
from drf_spectacular.utils import OpenApiParameter, OpenApiResponse, extend_schema
from rest_framework import permissions, serializers, status
from rest_framework.request import Request
from rest_framework.response import Response
from rest_framework.views import APIView

from fleet.api import QueryParameters, query_parameters
from fleet.api.sites import scoped, visible_or_404
from fleet.control import dispatching
from fleet.control.models import Assignment, DispatchPlan, DispatchTruck
from fleet.mine.models import LoadingUnit, Site
from fleet.vehicles.models import Equipment


class DispatchPermission(permissions.BasePermission):
    """Reading needs ``view_assignment``; a POST the view's ``required`` permission."""

    def has_permission(self, request: Request, view: Any) -> bool:
        user = request.user
        if not (user and user.is_authenticated):
            return False
        if request.method in permissions.SAFE_METHODS:
            return user.has_perm("control.view_assignment")
        return user.has_perm(view.required)


class DispatchPlanSerializer(serializers.ModelSerializer):
    class Meta:
        model = DispatchPlan
        fields = ["id", "at", "trigger", "reason", "status", "tph", "trucks", "solve_ms", "plan"]


class AssignmentSerializer(serializers.ModelSerializer):
    truck = serializers.CharField(source="equipment.name")
    loading_unit = serializers.CharField(source="loading_unit.name")
    dump = serializers.CharField(source="dump.name", allow_null=True, default=None)
    command_status = serializers.CharField(source="command.status", allow_null=True, default=None)

    class Meta:
        model = Assignment
        fields = [
            "assignment_id",
            "at",
            "equipment",
            "truck",
            "loading_unit",
            "dump",
            "plan",
            "manual",
            "reason",
            "actor",
            "command_status",
            "expected_arrival",
        ]


class UnitStateSerializer(serializers.Serializer):
    id = serializers.IntegerField()
    name = serializers.CharField()
    available = serializers.BooleanField()
    dig_rate_tph = serializers.FloatField()
    planned_tph = serializers.FloatField()
    reason = serializers.CharField(allow_blank=True)


class TruckDispatchSerializer(serializers.Serializer):
    equipment = serializers.UUIDField()
    truck = serializers.CharField()
    production_state = serializers.CharField()
    loading_unit = serializers.CharField(allow_null=True)
    manual_hold = serializers.BooleanField()
    assignment_id = serializers.UUIDField(allow_null=True)
    reported_assignment_id = serializers.UUIDField(allow_null=True)


class SiteDispatchSerializer(serializers.Serializer):
    enabled = serializers.BooleanField()
    plan = DispatchPlanSerializer(allow_null=True, help_text="The latest flow plan")
    units = UnitStateSerializer(many=True)
    trucks = TruckDispatchSerializer(many=True)


class EnableSerializer(serializers.Serializer):
    enabled = serializers.BooleanField()


class DispatchReasonSerializer(serializers.Serializer):
    reason = serializers.CharField(max_length=300)


class AvailabilitySerializer(serializers.Serializer):
    available = serializers.BooleanField()
    reason = serializers.CharField(max_length=300)
    dig_rate_tph = serializers.FloatField(
        required=False, allow_null=True, min_value=1, max_value=20_000
    )


class ManualAssignmentSerializer(serializers.Serializer):
    loading_unit = serializers.IntegerField(min_value=1, help_text="The loading unit's id")
    reason = serializers.CharField(max_length=300)


class UnitAvailabilityAnswer(serializers.Serializer):
    loading_unit = serializers.CharField()
    available = serializers.BooleanField()
    plan = DispatchPlanSerializer(allow_null=True)
    moved = AssignmentSerializer(many=True)


class ReplanAnswer(serializers.Serializer):
    plan = DispatchPlanSerializer()
    moved = AssignmentSerializer(many=True)


SITE = OpenApiParameter(
    "site_id", OpenApiTypes.UUID, OpenApiParameter.PATH, description="The site's id"
)
TRUCK = OpenApiParameter(
    "truck_id", OpenApiTypes.UUID, OpenApiParameter.PATH, description="The truck's EquipmentId"
)
UNIT = OpenApiParameter(
    "unit_id", OpenApiTypes.INT, OpenApiParameter.PATH, description="The loading unit's id"
)


def _site_answer(site: Site) -> Response:
    plan = DispatchPlan.objects.filter(site=site).order_by("-at", "-id").first()
    statuses = dispatching.unit_states(site)
    planned: dict[str, float] = {}
    for route in plan.plan.get("routes", []) if plan else []:
        planned[route["unit"]] = planned.get(route["unit"], 0.0) + route["tph"]
    units = []
    for unit in LoadingUnit.objects.filter(site=site, active=True).order_by("name"):
        last = statuses.get(unit.pk)
        rate = last.dig_rate_tph if last and last.dig_rate_tph else unit.loading_rate_tph
        units.append(
            {
                "id": unit.pk,
                "name": unit.name,
                "available": last is None or last.available,
                "dig_rate_tph": rate,
                "planned_tph": planned.get(str(unit.pk), 0.0),
                "reason": last.reason if last else "",
            }
        )
    trucks = [
        {
            "equipment": row.equipment_id,
            "truck": row.equipment.name,
            "production_state": row.production_state,
            "loading_unit": row.assignment.loading_unit.name if row.assignment else None,
            "manual_hold": row.manual_hold,
            "assignment_id": row.assignment.assignment_id if row.assignment else None,
            "reported_assignment_id": row.reported_assignment_id,
        }
        for row in DispatchTruck.objects.filter(equipment__site=site)
        .select_related("equipment", "assignment__loading_unit")
        .order_by("equipment__name")
    ]
    return Response(
        {
            "enabled": dispatching.enabled(site),
            "plan": DispatchPlanSerializer(plan).data if plan else None,
            "units": units,
            "trucks": trucks,
        }
    )


class SiteDispatchView(APIView):
    """A site's dispatch: the plan in force, each loading unit, each truck's assignment
    (viewers); switch the dispatcher on or off (supervisors)."""

    permission_classes = [DispatchPermission]
    required = "control.change_sitedispatch"

    @extend_schema(parameters=[SITE], responses=SiteDispatchSerializer, summary="Dispatch state")
    def get(self, request: Request, site_id: str) -> Response:
        return _site_answer(visible_or_404(Site.objects, request.user, "", pk=site_id))

    @extend_schema(
        parameters=[SITE],
        request=EnableSerializer,
        responses=SiteDispatchSerializer,
        summary="Switch the dispatcher on or off for a site",
    )
    def post(self, request: Request, site_id: str) -> Response:
        payload = EnableSerializer(data=request.data)
        payload.is_valid(raise_exception=True)
        site = visible_or_404(Site.objects, request.user, "", pk=site_id)
        try:
            dispatching.set_enabled(site, payload.validated_data["enabled"])
        except ValueError as error:
            return Response({"detail": str(error)}, status=status.HTTP_409_CONFLICT)
        return _site_answer(site)


class SiteReplanView(APIView):
    """Solve the flow plan again now and reconsider the trucks on their way (operators)."""

    permission_classes = [DispatchPermission]
    required = "control.dispatch_trucks"

    @extend_schema(
        parameters=[SITE],
        request=DispatchReasonSerializer,
        responses={
            201: ReplanAnswer,
            409: OpenApiResponse(description="The site is not dispatched"),
        },
        summary="Re-plan a site's dispatch now",
    )
    def post(self, request: Request, site_id: str) -> Response:
        payload = DispatchReasonSerializer(data=request.data)
        payload.is_valid(raise_exception=True)
        site = visible_or_404(Site.objects, request.user, "", pk=site_id)
        if not dispatching.enabled(site):
            return Response(
                {"detail": f"dispatch is off on {site.name}"}, status=status.HTTP_409_CONFLICT
            )
        reason = f"{request.user.get_username()}: {payload.validated_data['reason']}"
        result = dispatching.replan(site, trigger="operator", reason=reason)
        return Response(
            {
                "plan": DispatchPlanSerializer(result.plan).data,
                "moved": AssignmentSerializer(result.moved, many=True).data,
            },
            status=status.HTTP_201_CREATED,
        )


class UnitAvailabilityView(APIView):
    """Report a loading unit down or back, or digging at another rate (operators); where the
    site is dispatched the plan is solved again and trucks heading to a unit that went down
    are moved."""

    permission_classes = [DispatchPermission]
    required = "control.dispatch_trucks"

    @extend_schema(
        parameters=[UNIT],
        request=AvailabilitySerializer,
        responses={201: UnitAvailabilityAnswer},
        summary="A loading unit down or back",
    )
    def post(self, request: Request, unit_id: int) -> Response:
        payload = AvailabilitySerializer(data=request.data)
        payload.is_valid(raise_exception=True)
        unit = visible_or_404(LoadingUnit.objects.select_related("site"), request.user, pk=unit_id)
        data = payload.validated_data
        state, result = dispatching.set_unit_availability(
            unit,
            available=data["available"],
            reason=data["reason"],
            actor=request.user,
            dig_rate_tph=data.get("dig_rate_tph"),
        )
        return Response(
            {
                "loading_unit": unit.name,
                "available": state.available,
                "plan": DispatchPlanSerializer(result.plan).data if result else None,
                "moved": AssignmentSerializer(result.moved if result else [], many=True).data,
            },
            status=status.HTTP_201_CREATED,
        )


class TruckAssignmentView(APIView):
    """Send a truck to a loading unit by hand (operators): it holds until its next dump."""

    permission_classes = [DispatchPermission]
    required = "control.dispatch_trucks"

    @extend_schema(
        parameters=[TRUCK],
        request=ManualAssignmentSerializer,
        responses={201: AssignmentSerializer},
        summary="Assign a truck by hand",
    )
    def post(self, request: Request, truck_id: str) -> Response:
        payload = ManualAssignmentSerializer(data=request.data)
        payload.is_valid(raise_exception=True)
        truck = visible_or_404(
            Equipment.objects.select_related("site"),
            request.user,
            pk=truck_id,
            autonomous=True,
            kind=Equipment.Kind.HAUL_TRUCK,
        )
        unit = LoadingUnit.objects.filter(
            pk=payload.validated_data["loading_unit"], site_id=truck.site_id
        ).first()
        if unit is None:
            raise serializers.ValidationError(
                {"loading_unit": [f"no such loading unit on {truck.site.name}"]}
            )
        assignment = dispatching.assign_by_hand(
            truck, unit, reason=payload.validated_data["reason"], actor=request.user
        )
        return Response(AssignmentSerializer(assignment).data, status=status.HTTP_201_CREATED)


class TruckReleaseView(APIView):
    """Hand a truck assigned by hand back to the dispatcher (operators)."""

    permission_classes = [DispatchPermission]
    required = "control.dispatch_trucks"

    @extend_schema(
        parameters=[TRUCK],
        request=DispatchReasonSerializer,
        responses={
            200: AssignmentSerializer,
            204: OpenApiResponse(description="Released; assigned at its next dump"),
            409: OpenApiResponse(description="The truck is not held by hand"),
        },
        summary="Release a truck to the dispatcher",
    )
    def post(self, request: Request, truck_id: str) -> Response:
        payload = DispatchReasonSerializer(data=request.data)
        payload.is_valid(raise_exception=True)
        truck = visible_or_404(
            Equipment.objects.select_related("site"), request.user, pk=truck_id, autonomous=True
        )
        try:
            assignment = dispatching.release_truck(
                truck, reason=payload.validated_data["reason"], actor=request.user
            )
        except ValueError as error:
            return Response({"detail": str(error)}, status=status.HTTP_409_CONFLICT)
        if assignment is None:
            return Response(status=status.HTTP_204_NO_CONTENT)
        return Response(AssignmentSerializer(assignment).data)


class AssignmentListParameters(QueryParameters):
    site = serializers.UUIDField(required=False, help_text="Only this site's trucks")
    truck = serializers.UUIDField(required=False, help_text="Only this truck")
    limit = serializers.IntegerField(min_value=1, max_value=500, default=100)

    def to_internal_value(self, data: Any) -> Any:
        # DRF reads an empty optional parameter as absent; an empty id is a bad id here.
        blank = {n: ["Must be a valid UUID."] for n in ("site", "truck") if data.get(n) == ""}
        if blank:
            raise serializers.ValidationError(blank)
        return super().to_internal_value(data)


class AssignmentListView(APIView):
    """Recent assignments, newest first, each with its reason and plan (viewers)."""

    permission_classes = [DispatchPermission]
    required = "control.dispatch_trucks"

    @extend_schema(
        parameters=[AssignmentListParameters],
        responses=AssignmentSerializer(many=True),
        summary="Recent assignments with their reasons",
    )
    def get(self, request: Request) -> Response:
        query = query_parameters(request, AssignmentListParameters)
        rows = scoped(
            Assignment.objects.select_related("equipment", "loading_unit", "dump", "command"),
            request.user,
            "equipment__site",
        )
        if query.get("site"):
            rows = rows.filter(equipment__site_id=query["site"])
        if query.get("truck"):
            rows = rows.filter(equipment_id=query["truck"])
        rows = rows.order_by("-at", "-id")[: query["limit"]]
        return Response(AssignmentSerializer(rows, many=True).data)
