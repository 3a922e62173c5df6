from __future__ import annotations

from drf_spectacular.utils import extend_schema
from rest_framework import viewsets
from rest_framework.request import Request
from rest_framework.response import Response
from rest_framework.views import APIView

from fleet.api.sites import SiteScopedMixin
from fleet.vehicles.authentication import IsMachine, TruckTokenAuthentication
from fleet.vehicles.filters import EquipmentFilter
from fleet.vehicles.models import Equipment
from fleet.vehicles.serializers import EquipmentSerializer


class EquipmentViewSet(SiteScopedMixin, viewsets.ReadOnlyModelViewSet):
    """The equipment register (operators): ``?site=``, ``?kind=``, ``?status=``."""

    queryset = Equipment.objects.select_related("site")
    serializer_class = EquipmentSerializer
    filterset_class = EquipmentFilter


class VehicleSelfView(APIView):
    """The calling machine's own record: an integrator's first check that its token works."""

    authentication_classes = [TruckTokenAuthentication]
    permission_classes = [IsMachine]

    @extend_schema(responses=EquipmentSerializer, summary="Who am I (machine token)")
    def get(self, request: Request) -> Response:
        return Response(EquipmentSerializer(request.auth).data)
