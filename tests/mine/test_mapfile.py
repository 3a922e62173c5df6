import pytest

from fleet.mine.mapfile import MapFileError, export_site_map, import_site_map
from fleet.mine.models import PolicyZone, RoadNetwork
from tests.factories import small_site_map, zone_feature


def test_it_computes_way_length_and_grade_in_metres(site):
    ramp = site.active_network.ways.get(way_id=11)
    # Half of D in both axes at 22.3 S: ~257.6 m east and ~276.6 m north -> ~378 m.
    assert ramp.length_m == pytest.approx(378, rel=0.02)
    assert ramp.grade_pct == pytest.approx(20 / ramp.length_m * 100, rel=1e-6)
    assert ramp.one_lane


def test_an_exported_map_imports_back_without_a_new_revision(site):
    exported = export_site_map(site)
    report = import_site_map(exported)
    assert report.site == site
    assert not report.created_network
    assert RoadNetwork.objects.filter(site=site).count() == 1
    assert report.zones_unchanged == 1


def test_changed_roads_become_a_new_revision_and_retire_the_old(site):
    changed = export_site_map(site)
    for feature in changed["features"]:
        if (
            feature["properties"].get("featureType") == "way"
            and feature["properties"]["wayId"] == 10
        ):
            feature["properties"]["operatingSpeedKmh"] = 30
    report = import_site_map(changed)
    assert report.created_network
    statuses = dict(site.road_networks.values_list("revision", "status"))
    assert statuses == {1: "retired", 2: "active"}


def test_zones_export_in_the_iso_23725_feature_form(site):
    zone = next(
        f for f in export_site_map(site)["features"] if f.get("featureType") == "policyZone"
    )
    assert set(zone) >= {"type", "id", "geometry", "properties"}
    assert zone["properties"] == {
        "name": "Ramp 30 km/h",
        "policies": {"speedLimit": {"type": "absolute", "value": 8.3}},
    }


@pytest.mark.django_db
def test_a_map_with_an_invalid_zone_is_refused_whole_with_every_reason():
    bad = small_site_map(
        slug="badpit",
        zones=[
            zone_feature("Bow tie", {"exclusion": {}}, zone_id=None)
            | {
                "geometry": {
                    "type": "Polygon",
                    "coordinates": [
                        [
                            [-68.901, -22.301],
                            [-68.899, -22.299],
                            [-68.899, -22.301],
                            [-68.901, -22.299],
                            [-68.901, -22.301],
                        ]
                    ],
                }
            },
            zone_feature("Fast", {"speedLimit": {"type": "absolute", "value": -3}}),
            zone_feature("Odd", {"teleport": {}}),
        ],
    )
    with pytest.raises(MapFileError) as refused:
        import_site_map(bad)
    text = " | ".join(refused.value.messages)
    assert "Bow tie" in text and "Self-intersection" in text
    assert "must not be negative" in text
    assert "unknown policy 'teleport'" in text
    assert not PolicyZone.objects.exists()


def test_the_commands_round_trip_a_map_and_refuse_a_bad_one(site, tmp_path):
    import json

    from django.core.management import CommandError, call_command

    exported = tmp_path / "map.geojson"
    with exported.open("w") as handle:
        call_command("export_map", site.slug, stdout=handle)
    out = tmp_path / "out.txt"
    with out.open("w") as handle:
        call_command("import_map", str(exported), stdout=handle)
    assert "updated site testpit; roads r1 (unchanged); zones 0 new, 1 unchanged" in out.read_text()

    broken = json.loads(exported.read_text())
    broken["features"].append(zone_feature("Teleporter", {"teleport": {}}))
    exported.write_text(json.dumps(broken))
    with pytest.raises(CommandError, match="unknown policy 'teleport'"):
        call_command("import_map", str(exported))
