"""The inference pool over REST: everyone in the control room reads it (``pool.view_node``);
supervisors drain and undrain nodes (``pool.drain_node``), audited with their name. Thin: the
reading and the drains are in ``fleet.pool.services``, shared with the admin page."""

from __future__ import annotations

from datetime import timedelta
from typing import Any

from drf_spectacular.types import OpenApiTypes
from drf_spectacular.utils import OpenApiResponse, extend_schema
from rest_framework import permissions, status
from rest_framework.exceptions import APIException, NotFound
from rest_framework.request import Request
from rest_framework.response import Response
from rest_framework.views import APIView

from fleet.api import TimeRangeParameters, query_parameters
from fleet.pool import services
from fleet.pool.models import DRAIN_PERMISSION
from fleet.pool.serializers import (
    DeploymentSerializer,
    DrainChangeSerializer,
    DrainRequestSerializer,
    NodeSerializer,
    PoolSerializer,
)

VIEW_PERMISSION = "pool.view_node"


class _HasPermission(permissions.BasePermission):
    permission = ""

    def has_permission(self, request: Request, view: Any) -> bool:
        user = request.user
        return bool(user and user.is_authenticated and user.has_perm(self.permission))


class CanViewPool(_HasPermission):
    permission = VIEW_PERMISSION


class CanDrain(_HasPermission):
    """Draining moves work off a node: the supervisor's call."""

    permission = DRAIN_PERMISSION


class PoolUnavailable(APIException):
    status_code = status.HTTP_503_SERVICE_UNAVAILABLE
    default_detail = "The inference pool's state cannot be read right now."
    default_code = "pool_unavailable"


UNAVAILABLE = OpenApiResponse(description="The pool's Redis cannot be read")


def _reading() -> services.PoolReading:
    try:
        return services.read_pool()
    except services.PoolUnavailable as exc:
        raise PoolUnavailable(str(exc)) from exc


class PoolView(APIView):
    """The whole pool: nodes with their slices and replicas, deployments with their replicas,
    routes and placement, the plan's version and its recent decisions."""

    permission_classes = [CanViewPool]

    @extend_schema(
        responses={200: PoolSerializer, 503: UNAVAILABLE},
        summary="The inference pool: nodes, slices, replicas, deployments and the plan",
    )
    def get(self, request: Request) -> Response:
        return Response(PoolSerializer(services.summary(_reading())).data)


class NodeListView(APIView):
    """Every node the pool knows, with its slices and their replicas."""

    permission_classes = [CanViewPool]

    @extend_schema(responses={200: NodeSerializer(many=True), 503: UNAVAILABLE})
    def get(self, request: Request) -> Response:
        return Response(NodeSerializer(services.node_summaries(_reading()), many=True).data)


class NodeDetailView(APIView):
    permission_classes = [CanViewPool]

    @extend_schema(
        responses={
            200: NodeSerializer,
            404: OpenApiResponse(description="No such node"),
            503: UNAVAILABLE,
        }
    )
    def get(self, request: Request, name: str) -> Response:
        try:
            node = services.node_summary(_reading(), name)
        except services.UnknownNode:
            raise NotFound(f"no node named {name!r} in the pool") from None
        return Response(NodeSerializer(node).data)


class NodeDrainView(APIView):
    """Drain a node (``draining=True``) or put it back in service; the user is audited."""

    permission_classes = [CanDrain]
    draining = True

    @extend_schema(
        request=DrainRequestSerializer,
        responses={
            200: DrainChangeSerializer,
            403: OpenApiResponse(description="Lacks pool.drain_node"),
            404: OpenApiResponse(description="No such node"),
            503: UNAVAILABLE,
        },
    )
    def post(self, request: Request, name: str) -> Response:
        payload = DrainRequestSerializer(data=request.data)
        payload.is_valid(raise_exception=True)
        try:
            change = services.set_draining(
                name, self.draining, by=request.user, reason=payload.validated_data["reason"]
            )
        except services.UnknownNode:
            raise NotFound(f"no node named {name!r} in the pool") from None
        except services.PoolUnavailable as exc:
            raise PoolUnavailable(str(exc)) from exc
        return Response(DrainChangeSerializer(change).data)


class DeploymentListView(APIView):
    """The deployments: what each asks for, the replicas the plan gives it, its route and
    whether it is placed."""

    permission_classes = [CanViewPool]

    @extend_schema(responses={200: DeploymentSerializer(many=True), 503: UNAVAILABLE})
    def get(self, request: Request) -> Response:
        deployments = services.deployment_summaries(_reading())
        return Response(DeploymentSerializer(deployments, many=True).data)


class UtilisationParameters(TimeRangeParameters):
    longest = timedelta(days=31)


class UtilisationView(APIView):
    """The pool over time, from the samples taken every minute (``pool.sample_utilisation``)."""

    permission_classes = [CanViewPool]

    @extend_schema(
        parameters=[UtilisationParameters],
        responses=OpenApiTypes.OBJECT,
        summary="Each slice's busy fraction and each deployment's rate, batch size and latency",
    )
    def get(self, request: Request) -> Response:
        params = query_parameters(request, UtilisationParameters)
        return Response(services.utilisation_series(params["from"], params["to"]))
