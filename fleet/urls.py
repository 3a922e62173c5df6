from django.contrib import admin
from django.contrib.auth import views as auth_views
from django.urls import include, path
from drf_spectacular.views import SpectacularAPIView, SpectacularRedocView, SpectacularSwaggerView
from rest_framework.routers import DefaultRouter

from fleet import dashboard
from fleet.accounts import views as account_views
from fleet.control import alert_views, dispatch_views, replay_views, traffic_views, zone_views
from fleet.control import views as control_views
from fleet.learning import views as learning_views
from fleet.mine import views as mine_views
from fleet.pool import services as pool_services
from fleet.telemetry import replicas
from fleet.telemetry import views as telemetry_views
from fleet.vehicles import views as vehicle_views

router = DefaultRouter()
router.register("sites", mine_views.SiteViewSet)
router.register("road-networks", mine_views.RoadNetworkViewSet)
router.register("ways", mine_views.WayViewSet)
router.register("zones", mine_views.PolicyZoneViewSet)
router.register("loading-units", mine_views.LoadingUnitViewSet)
router.register("dump-points", mine_views.DumpPointViewSet)
router.register("areas", mine_views.AreaViewSet)
router.register("equipment", vehicle_views.EquipmentViewSet)
router.register("models/versions", learning_views.ModelVersionViewSet, basename="model-version")

api_v1 = [
    path("me/", account_views.MeView.as_view(), name="me"),
    path("vehicle/me/", vehicle_views.VehicleSelfView.as_view(), name="vehicle-me"),
    path(
        "vehicle/messages/", telemetry_views.VehicleMessagesView.as_view(), name="vehicle-messages"
    ),
    path("vehicle/commands/", control_views.VehicleCommandsView.as_view(), name="vehicle-commands"),
    path(
        "vehicle/commands/<uuid:command_id>/ack/",
        control_views.VehicleCommandAckView.as_view(),
        name="vehicle-command-ack",
    ),
    path("trucks/", telemetry_views.TruckListView.as_view(), name="truck-list"),
    path(
        "sites/<uuid:site_id>/availability/",
        telemetry_views.SiteAvailabilityView.as_view(),
        name="site-availability",
    ),
    path(
        "sites/<uuid:site_id>/replay/",
        replay_views.SiteReplayView.as_view(),
        name="site-replay",
    ),
    path(
        "sites/<uuid:site_id>/production/",
        telemetry_views.SiteProductionView.as_view(),
        name="site-production",
    ),
    path("trucks/in-area/", telemetry_views.TrucksInAreaView.as_view(), name="trucks-in-area"),
    path("trucks/<uuid:pk>/track/", telemetry_views.TruckTrackView.as_view(), name="truck-track"),
    path(
        "trucks/<uuid:pk>/positions/",
        telemetry_views.TruckPositionsView.as_view(),
        name="truck-positions",
    ),
    path(
        "trucks/<uuid:pk>/events/", telemetry_views.TruckEventsView.as_view(), name="truck-events"
    ),
    path(
        "trucks/<uuid:pk>/series/", telemetry_views.TruckSeriesView.as_view(), name="truck-series"
    ),
    path(
        "trucks/<uuid:pk>/predictions/",
        learning_views.TruckPredictionsView.as_view(),
        name="truck-predictions",
    ),
    path(
        "trucks/<uuid:truck_id>/stop/",
        control_views.TruckCommandView.as_view(action="stop"),
        name="truck-stop",
    ),
    path(
        "trucks/<uuid:truck_id>/resume/",
        control_views.TruckCommandView.as_view(action="resume"),
        name="truck-resume",
    ),
    path("commands/", control_views.CommandListView.as_view(), name="command-list"),
    path("control/states/", control_views.TruckStateListView.as_view(), name="truck-state-list"),
    path(
        "sites/<uuid:site_id>/all-stop/",
        control_views.SiteAllStopView.as_view(),
        name="site-all-stop",
    ),
    path(
        "sites/<uuid:site_id>/all-stop/remove/",
        control_views.SiteAllStopRemoveView.as_view(),
        name="site-all-stop-remove",
    ),
    path("alerts/", alert_views.AlertListView.as_view(), name="alert-list"),
    path("alerts/<int:pk>/", alert_views.AlertDetailView.as_view(), name="alert-detail"),
    path(
        "alerts/<int:pk>/acknowledge/",
        alert_views.AlertActionView.as_view(action="acknowledge"),
        name="alert-acknowledge",
    ),
    path("alerts/<int:pk>/assign/", alert_views.AlertAssignView.as_view(), name="alert-assign"),
    path(
        "alerts/<int:pk>/resolve/",
        alert_views.AlertActionView.as_view(action="resolve"),
        name="alert-resolve",
    ),
    path(
        "sites/<uuid:site_id>/health-policy/",
        alert_views.HealthPolicyView.as_view(),
        name="site-health-policy",
    ),
    path(
        "sites/<uuid:site_id>/dispatch/",
        dispatch_views.SiteDispatchView.as_view(),
        name="site-dispatch",
    ),
    path(
        "sites/<uuid:site_id>/dispatch/replan/",
        dispatch_views.SiteReplanView.as_view(),
        name="site-dispatch-replan",
    ),
    path(
        "sites/<uuid:site_id>/zone-answers/",
        zone_views.SiteZoneAnswersView.as_view(),
        name="site-zone-answers",
    ),
    path(
        "traffic-permissions/",
        traffic_views.TrafficPermissionListView.as_view(),
        name="traffic-permission-list",
    ),
    path(
        "traffic-permissions/<uuid:permission_id>/grant/",
        traffic_views.TrafficPermissionDecideView.as_view(action="grant"),
        name="traffic-permission-grant",
    ),
    path(
        "traffic-permissions/<uuid:permission_id>/revoke/",
        traffic_views.TrafficPermissionDecideView.as_view(action="revoke"),
        name="traffic-permission-revoke",
    ),
    path(
        "loading-units/<int:unit_id>/availability/",
        dispatch_views.UnitAvailabilityView.as_view(),
        name="loading-unit-availability",
    ),
    path(
        "trucks/<uuid:truck_id>/assignment/",
        dispatch_views.TruckAssignmentView.as_view(),
        name="truck-assignment",
    ),
    path(
        "trucks/<uuid:truck_id>/assignment/release/",
        dispatch_views.TruckReleaseView.as_view(),
        name="truck-assignment-release",
    ),
    path(
        "dispatch/assignments/",
        dispatch_views.AssignmentListView.as_view(),
        name="dispatch-assignment-list",
    ),
    path(
        "ingest/replicas/",
        telemetry_views.IngestReplicaListView.as_view(),
        name="ingest-replica-list",
    ),
    path("models/aliases/", learning_views.ModelAliasListView.as_view(), name="model-alias-list"),
    path("models/shadow/", learning_views.ShadowListView.as_view(), name="model-shadow-list"),
    path("models/changes/", learning_views.AliasChangeListView.as_view(), name="alias-change-list"),
    path("models/<str:name>/shadow/", learning_views.ShadowView.as_view(), name="model-shadow"),
    path(
        "models/<str:name>/roll-back/",
        learning_views.RollBackView.as_view(),
        name="model-roll-back",
    ),
    path("", include("fleet.pool.urls")),
    path("", include(router.urls)),
]

# The web process's /metrics also reports the inference pool (read from its Redis at each scrape).
pool_services.install_collector()
# ... and the known ingest replicas, with the age of each one's last heartbeat.
replicas.install_collector()

# A path under /api/ that matches no route (a malformed id, say) gets a JSON 404, as the API's.
handler404 = "fleet.api.not_found"

urlpatterns = [
    # The operator dashboard (frontend/, built by Vite; docs/dashboard.md) and its login.
    path("", dashboard.dashboard, name="dashboard"),
    path("login/", auth_views.LoginView.as_view(redirect_authenticated_user=True), name="login"),
    path("logout/", auth_views.LogoutView.as_view(), name="logout"),
    path("admin/", admin.site.urls),
    path("api/v1/", include(api_v1)),
    path("metrics", telemetry_views.metrics_view, name="metrics"),
    path("api/schema/", SpectacularAPIView.as_view(), name="schema"),
    path("api/docs/", SpectacularSwaggerView.as_view(url_name="schema"), name="api-docs"),
    path("api/redoc/", SpectacularRedocView.as_view(url_name="schema"), name="api-redoc"),
]
