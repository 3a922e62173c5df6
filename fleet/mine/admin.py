from django.contrib import admin

from fleet.mine.models import (
    Area,
    DumpPoint,
    LoadingUnit,
    PolicyZone,
    RoadNetwork,
    RoadNode,
    Site,
    Way,
    ZoneResponse,
)

for model in (Site, RoadNetwork, RoadNode, Way, PolicyZone, ZoneResponse, LoadingUnit, DumpPoint, Area):
    admin.site.register(model)
