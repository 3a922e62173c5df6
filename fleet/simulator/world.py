"""The simulated mine's road graph: ``fleet.mine.roads`` (the site's road network as numpy
arrays, which live serving plans ETA routes on too), under the name the simulator has always
imported it by."""

from fleet.learning.features import LocalFrame
from fleet.mine.roads import (
    KMH,
    Destination,
    World,
    Zone,
    points_in_ring,
    world_for_site,
    zone_from_feature,
)

__all__ = [
    "KMH",
    "Destination",
    "LocalFrame",
    "World",
    "Zone",
    "points_in_ring",
    "world_for_site",
    "zone_from_feature",
]
