"""Admin map widgets that work without internet.

Control rooms at remote pits often have no internet, and Django's stock map widgets load
OpenLayers from a CDN and draw OpenStreetMap tiles. Here OpenLayers comes from our own static
files (``fleet/static/vendor/ol``) and the background is plain: for context the widget draws the
site's boundary and haul roads, read-only and grey, under the geometry being edited.
"""

from __future__ import annotations

from collections.abc import Iterable
from typing import Any

from django.contrib.gis.forms.widgets import OpenLayersWidget
from django.contrib.gis.geos import GEOSGeometry
from django.utils.safestring import SafeString

from fleet.mine.mapfile import export_site_map
from fleet.mine.models import Site

OL_JS = "vendor/ol/ol.js"
OL_CSS = "vendor/ol/ol.css"
# Only these feature types give context without hiding what is being drawn.
CONTEXT_FEATURE_TYPES = frozenset({"siteBoundary", "way"})


def empty_collection() -> dict[str, Any]:
    return {"type": "FeatureCollection", "features": []}


def site_context_map(sites: Iterable[Site]) -> dict[str, Any]:
    """The boundaries and active roads of ``sites`` as one GeoJSON FeatureCollection (WGS84)."""
    features: list[dict[str, Any]] = []
    for site in sites:
        exported = export_site_map(site)["features"]
        features += [
            f for f in exported if f["properties"].get("featureType") in CONTEXT_FEATURE_TYPES
        ]
    return {"type": "FeatureCollection", "features": features}


class OfflineMapWidget(OpenLayersWidget):
    """Django's OpenLayers widget with vendored OpenLayers and no tile layer.

    ``context_map`` is a GeoJSON FeatureCollection in WGS84 drawn read-only under the edited
    geometry; with no value yet, the view fits it, so a new zone is drawn where the site is.
    """

    template_name = "admin/gis/offline_map_widget.html"
    # Django's widget edits in Web Mercator (3857): the form field transforms back to the
    # model's WGS84 on clean, so stored geometry stays 4326 as on the wire.
    map_srid = 3857

    class Media:
        # extend = False: the parent's Media names the jsDelivr CDN, which must never load.
        extend = False
        css = {"all": (OL_CSS, "gis/css/ol3.css", "fleet/admin-map.css")}
        js = (OL_JS, "gis/js/OLMapWidget.js", "fleet/offline-mapwidget.js")

    def __init__(
        self, attrs: dict[str, Any] | None = None, context_map: dict[str, Any] | None = None
    ) -> None:
        super().__init__(attrs)
        self.context_map = context_map or empty_collection()

    def get_context(self, name: str, value: Any, attrs: dict[str, Any] | None) -> dict[str, Any]:
        context = super().get_context(name, value, attrs)
        context["context_map"] = self.context_map
        context["context_map_id"] = f"{context['id']}_context"
        return context


def readonly_map(
    name: str, geometry: GEOSGeometry | None, context_map: dict[str, Any] | None = None
) -> SafeString:
    """A map showing ``geometry`` that cannot be edited (for read-only admin pages)."""
    widget = OfflineMapWidget(context_map=context_map)
    return widget.render(name, geometry, attrs={"id": f"id_{name}", "disabled": True})
