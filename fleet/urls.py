from django.contrib import admin
from django.urls import include, path
from drf_spectacular.views import SpectacularAPIView, SpectacularRedocView, SpectacularSwaggerView
from rest_framework.routers import DefaultRouter

from fleet.mine import views as mine_views
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

api_v1 = [
    path("vehicle/me/", vehicle_views.VehicleSelfView.as_view(), name="vehicle-me"),
    path("", include(router.urls)),
]

urlpatterns = [
    path("admin/", admin.site.urls),
    path("api/v1/", include(api_v1)),
    path("api/schema/", SpectacularAPIView.as_view(), name="schema"),
    path("api/docs/", SpectacularSwaggerView.as_view(url_name="schema"), name="api-docs"),
    path("api/redoc/", SpectacularRedocView.as_view(url_name="schema"), name="api-redoc"),
]
