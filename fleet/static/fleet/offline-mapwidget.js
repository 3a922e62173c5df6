/* global ol, MapWidget */
'use strict';
// Django's MapWidget (gis/js/OLMapWidget.js) falls back to OpenStreetMap tiles when it is given
// no base layer. Control rooms often have no internet, so the base here is a read-only vector
// layer of the site (boundary and haul roads, grey) on the plain background of the map div.
{
    const GREY = '#8c8c8c';
    const boundaryStyle = new ol.style.Style({
        stroke: new ol.style.Stroke({color: GREY, width: 2, lineDash: [8, 5]}),
        fill: new ol.style.Fill({color: 'rgba(0, 0, 0, 0.03)'})
    });

    function roadStyle(feature, resolution) {
        const props = feature.getProperties();
        const styles = [new ol.style.Style({
            stroke: new ol.style.Stroke({
                color: GREY,
                width: 4,
                lineDash: props.oneLane ? [10, 6] : undefined
            })
        })];
        // WayIds only once a road is long enough on screen to carry a label (~2 m/pixel).
        if (resolution < 2 && props.wayId !== undefined) {
            styles.push(new ol.style.Style({
                text: new ol.style.Text({
                    text: 'W' + props.wayId,
                    font: '600 11px system-ui, sans-serif',
                    fill: new ol.style.Fill({color: '#555'}),
                    stroke: new ol.style.Stroke({color: '#fff', width: 3})
                })
            }));
        }
        return styles;
    }

    function contextStyle(feature, resolution) {
        return feature.get('featureType') === 'way' ? roadStyle(feature, resolution) : boundaryStyle;
    }

    // The geometry being edited, in a colour the grey context never uses.
    const EDIT = '#1565c0';
    const editedStyle = [
        new ol.style.Style({
            stroke: new ol.style.Stroke({color: EDIT, width: 3}),
            fill: new ol.style.Fill({color: 'rgba(21, 101, 192, 0.18)'}),
            image: new ol.style.Circle({
                radius: 6,
                fill: new ol.style.Fill({color: EDIT}),
                stroke: new ol.style.Stroke({color: '#fff', width: 2})
            })
        })
    ];

    function contextLayer(scriptId) {
        const node = document.getElementById(scriptId);
        const collection = node ? JSON.parse(node.textContent) : {type: 'FeatureCollection', features: []};
        const features = new ol.format.GeoJSON().readFeatures(collection, {
            dataProjection: 'EPSG:4326',
            featureProjection: 'EPSG:3857'
        });
        return new ol.layer.Vector({
            source: new ol.source.Vector({features: features}),
            style: contextStyle,
            properties: {name: 'site-context'}
        });
    }

    // The roads, where zones are drawn; the lease boundary only when there are no roads yet.
    function contextExtent(source) {
        const roads = ol.extent.createEmpty();
        source.getFeatures().filter((f) => f.get('featureType') === 'way').forEach((f) => {
            ol.extent.extend(roads, f.getGeometry().getExtent());
        });
        return ol.extent.isEmpty(roads) ? source.getExtent() : roads;
    }

    class OfflineMapWidget extends MapWidget {
        constructor(options) {
            const context = contextLayer(options.context_id);
            super(Object.assign({}, options, {base_layer: context}));
            this.contextLayer = context;
            const hasValue = Boolean(document.getElementById(options.id).value);
            const extent = contextExtent(context.getSource());
            if (!hasValue && !ol.extent.isEmpty(extent)) {
                // Nothing drawn yet: show the site instead of Django's default (0, 0).
                this.map.getView().fit(extent, {padding: [30, 30, 30, 30]});
            }
            if (options.disabled) {
                this.map.removeInteraction(this.interactions.draw);
                this.map.removeInteraction(this.interactions.modify);
            }
            this.featureOverlay.setStyle(editedStyle);
            this.map.addControl(new ol.control.ScaleLine());
        }
    }

    window.OfflineMapWidget = OfflineMapWidget;
}
