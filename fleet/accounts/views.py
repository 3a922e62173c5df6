"""Who is calling: the dashboard asks once, to label its controls by role. The server still
decides every action on its own (a control shown to someone without the role is refused)."""

from __future__ import annotations

from drf_spectacular.utils import extend_schema
from rest_framework import permissions, serializers
from rest_framework.request import Request
from rest_framework.response import Response
from rest_framework.views import APIView

from fleet.accounts.roles import ROLES

# What the dashboard offers, and the permission the server checks for each.
ABILITIES = {
    "applyAllStop": "control.apply_allstop",
    "removeAllStop": "control.remove_allstop",
    "changeAlert": "control.change_alert",
    "stopTruck": "control.add_command",
    "activateZone": "mine.activate_policyzone",
    "decideTraffic": "control.decide_trafficpermission",
    "drainNode": "pool.drain_node",
}


class AbilitiesSerializer(serializers.Serializer):
    # Named as the dashboard's TypeScript names them (ABILITIES' keys).
    applyAllStop = serializers.BooleanField()
    removeAllStop = serializers.BooleanField()
    changeAlert = serializers.BooleanField()
    stopTruck = serializers.BooleanField()
    activateZone = serializers.BooleanField()
    decideTraffic = serializers.BooleanField()
    drainNode = serializers.BooleanField()


class MeSerializer(serializers.Serializer):
    username = serializers.CharField()
    is_superuser = serializers.BooleanField()
    roles = serializers.ListField(
        child=serializers.CharField(), help_text="viewer, operator, supervisor, admin"
    )
    can = AbilitiesSerializer(help_text="What the server will allow this user to do")


class MeView(APIView):
    permission_classes = [permissions.IsAuthenticated]

    @extend_schema(responses=MeSerializer, summary="The calling user, their roles and abilities")
    def get(self, request: Request) -> Response:
        user = request.user
        roles = sorted(
            set(user.groups.values_list("name", flat=True)) & set(ROLES), key=ROLES.index
        )
        return Response(
            {
                "username": user.get_username(),
                "is_superuser": user.is_superuser,
                "roles": roles,
                "can": {name: user.has_perm(perm) for name, perm in ABILITIES.items()},
            }
        )
