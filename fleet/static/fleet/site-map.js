/* global ol */
'use strict';
// The admin's site map: the whole map file (docs/map-format.md) drawn with the vendored
// OpenLayers on a plain background. No tile layer: control rooms may have no internet, and a
// pit's roads change faster than any public basemap.
(function () {
    const POLICY_COLOURS = {
        exclusion: '#d32f2f',
        speedLimit: '#f59e0b',
        controlledAccess: '#1e63c6',
        trafficPermission: '#7b3fb5',
        lowTraction: '#8d5a2b',
        roughRoad: '#8d5a2b'
    };
    // A zone with several policies is coloured by the one that restricts a truck most.
    const POLICY_PRIORITY = [
        'exclusion', 'trafficPermission', 'controlledAccess', 'speedLimit', 'lowTraction', 'roughRoad'
    ];
    const POLICY_LABELS = {
        exclusion: 'Exclusion (no entry)',
        speedLimit: 'Speed limit',
        controlledAccess: 'Controlled access',
        trafficPermission: 'Traffic permission',
        lowTraction: 'Low traction / rough road',
        roughRoad: 'Low traction / rough road'
    };
    // Label text on the pale map needs more contrast than the amber stroke has.
    const POLICY_TEXT = Object.assign({}, POLICY_COLOURS, {speedLimit: '#9a5b00'});
    const STATUS_DASH = {active: undefined, pending: [10, 6], pending_delete: [2, 6]};
    const STATUS_LABELS = {active: 'Active', pending: 'Pending', pending_delete: 'Pending delete'};
    const ROAD = '#37474f';
    const ONE_LANE = '#00838f';
    const FONT = '600 12px system-ui, -apple-system, "Segoe UI", sans-serif';
    // Resolutions (metres per pixel) below which labels fit without covering the map.
    const WAY_LABEL_RES = 6;
    const WAY_NAME_RES = 1.6;
    const NODE_LABEL_RES = 1.2;
    const ZONE_LABEL_RES = 4;

    function rgba(hex, alpha) {
        const n = parseInt(hex.slice(1), 16);
        return `rgba(${(n >> 16) & 255}, ${(n >> 8) & 255}, ${n & 255}, ${alpha})`;
    }

    function label(text, options) {
        return new ol.style.Text(Object.assign({
            text: text,
            font: FONT,
            fill: new ol.style.Fill({color: '#1f1f1f'}),
            stroke: new ol.style.Stroke({color: 'rgba(255, 255, 255, 0.95)', width: 4}),
            overflow: true
        }, options || {}));
    }

    function dominantPolicy(policies) {
        return POLICY_PRIORITY.find((name) => policies && name in policies) || 'exclusion';
    }

    function policySummary(policies) {
        return Object.entries(policies || {}).map(([name, body]) => {
            if (name === 'speedLimit') {
                return body.type === 'percent'
                    ? `speed ≤ ${body.value} % of mapped`
                    : `speed ≤ ${Math.round(body.value * 3.6)} km/h`;
            }
            if (name === 'trafficPermission') {
                return `traffic permission (${body.capacity || 1} at a time)`;
            }
            if (name === 'controlledAccess') {
                return 'controlled access';
            }
            return name === 'lowTraction' ? 'low traction' : name === 'roughRoad' ? 'rough road' : name;
        }).join(', ');
    }

    // --- styles -----------------------------------------------------------------------------

    const boundaryStyle = new ol.style.Style({
        stroke: new ol.style.Stroke({color: '#5d4037', width: 2.5, lineDash: [12, 6]}),
        fill: new ol.style.Fill({color: '#fcfbf7'})
    });

    function areaStyle(feature, resolution) {
        return new ol.style.Style({
            stroke: new ol.style.Stroke({color: '#607d8b', width: 1.5}),
            fill: new ol.style.Fill({color: 'rgba(96, 125, 139, 0.16)'}),
            text: resolution < ZONE_LABEL_RES ? label(feature.get('name'), {
                fill: new ol.style.Fill({color: '#37474f'}), font: '500 11px system-ui, sans-serif'
            }) : undefined
        });
    }

    // Zone names sit just above the zone, so they do not fight the road labels inside it.
    function topCentre(feature) {
        const extent = feature.getGeometry().getExtent();
        return new ol.geom.Point([(extent[0] + extent[2]) / 2, extent[3]]);
    }

    function zoneStyle(feature, resolution) {
        const policy = dominantPolicy(feature.get('policies'));
        const colour = POLICY_COLOURS[policy];
        const status = feature.get('status');
        const active = status === 'active';
        const styles = [new ol.style.Style({
            stroke: new ol.style.Stroke({
                color: colour, width: active ? 2.5 : 2, lineDash: STATUS_DASH[status]
            }),
            fill: new ol.style.Fill({color: rgba(colour, active ? 0.25 : 0.1)})
        })];
        if (resolution < ZONE_LABEL_RES) {
            styles.push(new ol.style.Style({
                geometry: topCentre,
                text: label(feature.get('name'), {
                    fill: new ol.style.Fill({color: POLICY_TEXT[policy]}),
                    font: '700 12px system-ui, sans-serif',
                    textBaseline: 'bottom',
                    offsetY: -3
                })
            }));
        }
        return styles;
    }

    function wayStyle(feature, resolution) {
        const oneLane = feature.get('oneLane');
        const styles = [
            new ol.style.Style({stroke: new ol.style.Stroke({color: '#ffffff', width: 9})}),
            new ol.style.Style({
                stroke: new ol.style.Stroke({
                    color: oneLane ? ONE_LANE : ROAD,
                    width: oneLane ? 4 : 5.5,
                    lineDash: oneLane ? [12, 7] : undefined
                })
            })
        ];
        if (resolution < WAY_LABEL_RES) {
            const name = feature.get('name');
            const text = `W${feature.get('wayId')}` + (resolution < WAY_NAME_RES && name ? ` ${name}` : '');
            styles.push(new ol.style.Style({text: label(text, {offsetY: -14})}));
        }
        return styles;
    }

    function nodeStyle(feature, resolution) {
        return new ol.style.Style({
            image: new ol.style.Circle({
                radius: 4.5,
                fill: new ol.style.Fill({color: '#ffffff'}),
                stroke: new ol.style.Stroke({color: ROAD, width: 2})
            }),
            text: resolution < NODE_LABEL_RES ? label(`N${feature.get('nodeId')}`, {
                offsetX: 10, offsetY: 10, font: '500 10px system-ui, sans-serif',
                fill: new ol.style.Fill({color: '#455a64'})
            }) : undefined
        });
    }

    const DESTINATION_SYMBOLS = {
        loadingUnit: {points: 3, radius: 10, angle: 0, colour: '#2e7d32'},
        crusher: {points: 4, radius: 10, angle: 0, colour: '#212121'},
        waste_dump: {points: 4, radius: 9, angle: Math.PI / 4, colour: '#757575'},
        stockpile: {points: 4, radius: 9, angle: Math.PI / 4, colour: '#827717'}
    };

    function destinationSymbol(feature) {
        const key = feature.get('featureType') === 'loadingUnit' ? 'loadingUnit' : feature.get('kind');
        return DESTINATION_SYMBOLS[key] || DESTINATION_SYMBOLS.stockpile;
    }

    function shape(symbol) {
        return new ol.style.RegularShape({
            points: symbol.points,
            radius: symbol.radius,
            angle: symbol.angle,
            fill: new ol.style.Fill({color: symbol.colour}),
            stroke: new ol.style.Stroke({color: '#ffffff', width: 2})
        });
    }

    function destinationStyle(feature) {
        return new ol.style.Style({
            image: shape(destinationSymbol(feature)),
            text: label(feature.get('name'), {offsetY: 20, font: '700 12px system-ui, sans-serif'})
        });
    }

    // --- data -------------------------------------------------------------------------------

    // featureType and status of a zone are foreign members of the Feature (the ISO 23725 form
    // keeps properties to {name, policies}); OpenLayers reads only properties, so copy them in.
    // Ids are dropped: WayIds and nodeIds may coincide, and a source skips repeated ids.
    function normalise(collection) {
        return collection.features.map((feature) => {
            const properties = Object.assign({}, feature.properties);
            if (feature.featureType) {
                properties.featureType = feature.featureType;
                properties.status = feature.status;
                properties.zoneId = feature.id;
            }
            return {type: 'Feature', geometry: feature.geometry, properties: properties};
        });
    }

    function readFeatures(collection) {
        return new ol.format.GeoJSON().readFeatures(
            {type: 'FeatureCollection', features: normalise(collection)},
            {dataProjection: 'EPSG:4326', featureProjection: 'EPSG:3857'}
        );
    }

    const LAYERS = [
        {name: 'boundary', types: ['siteBoundary'], style: boundaryStyle},
        {name: 'areas', types: ['area'], style: areaStyle},
        {name: 'zones', types: ['policyZone'], style: zoneStyle},
        {name: 'ways', types: ['way'], style: wayStyle},
        {name: 'nodes', types: ['roadNode'], style: nodeStyle},
        {name: 'destinations', types: ['loadingUnit', 'dumpPoint'], style: destinationStyle}
    ];

    function buildLayers(features) {
        return LAYERS.map((spec) => new ol.layer.Vector({
            source: new ol.source.Vector({
                features: features.filter((f) => spec.types.includes(f.get('featureType')))
            }),
            style: spec.style,
            declutter: spec.name !== 'boundary' && spec.name !== 'areas',
            properties: {name: spec.name}
        }));
    }

    // --- tooltip ----------------------------------------------------------------------------

    let siteDefaultKmh = null;  // set from the map file's haulmind.site on load

    function describe(feature) {
        const p = feature.getProperties();
        switch (p.featureType) {
        case 'way':
            return [`Way ${p.wayId}${p.name ? ' — ' + p.name : ''}`,
                `${Math.round(p.lengthM)} m, grade ${p.gradePct} %`,
                (p.operatingSpeedKmh ? `${p.operatingSpeedKmh} km/h` : `${siteDefaultKmh} km/h (site default)`) +
                    (p.oneLane ? ', one lane' : ''),
                `nodes ${p.startNode} → ${p.endNode}`];
        case 'roadNode':
            return [`Road node ${p.nodeId}`, `elevation ${feature.getGeometry().getCoordinates()[2] ?? '?'} m`];
        case 'policyZone':
            return [p.name, policySummary(p.policies), STATUS_LABELS[p.status] || p.status];
        case 'loadingUnit':
            return [`Loading unit ${p.name}`, `${p.material}, ${p.loadingRateTph} t/h`];
        case 'dumpPoint':
            return [`${p.name}`, `${p.kind.replace('_', ' ')}, ${p.capacityTph} t/h`];
        case 'area':
            return [p.name, p.kind];
        default:
            return null;
        }
    }

    function showTooltip(tooltip, lines, pixel) {
        tooltip.replaceChildren();
        lines.forEach((line, index) => {
            const el = document.createElement(index === 0 ? 'strong' : 'div');
            el.textContent = line;
            tooltip.appendChild(el);
        });
        tooltip.style.left = pixel[0] + 'px';
        tooltip.style.top = pixel[1] + 'px';
        tooltip.hidden = false;
    }

    function bindTooltip(map, tooltip) {
        map.on('pointermove', (event) => {
            if (event.dragging) {
                return;
            }
            const feature = map.forEachFeatureAtPixel(event.pixel, (f) => f, {
                hitTolerance: 5,
                layerFilter: (layer) => layer.get('name') !== 'boundary'
            });
            const lines = feature && describe(feature);
            if (lines) {
                showTooltip(tooltip, lines, event.pixel);
            } else {
                tooltip.hidden = true;
            }
        });
        map.getViewport().addEventListener('mouseleave', () => { tooltip.hidden = true; });
    }

    // --- legend and zone list ---------------------------------------------------------------

    const SVG_NS = 'http://www.w3.org/2000/svg';

    function svg(children) {
        const root = document.createElementNS(SVG_NS, 'svg');
        root.setAttribute('width', '34');
        root.setAttribute('height', '18');
        root.setAttribute('viewBox', '0 0 34 18');
        children.forEach(([tag, attrs]) => {
            const el = document.createElementNS(SVG_NS, tag);
            Object.entries(attrs).forEach(([k, v]) => el.setAttribute(k, v));
            root.appendChild(el);
        });
        return root;
    }

    function zoneSwatch(colour, status) {
        const dash = STATUS_DASH[status];
        return svg([['rect', {
            x: 2, y: 2, width: 30, height: 14, fill: rgba(colour, status === 'active' ? 0.25 : 0.1),
            stroke: colour, 'stroke-width': 2, 'stroke-dasharray': dash ? dash.join(' ') : 'none'
        }]]);
    }

    function lineSwatch(colour, width, dash) {
        return svg([
            ['line', {x1: 1, y1: 9, x2: 33, y2: 9, stroke: '#ffffff', 'stroke-width': width + 3}],
            ['line', {x1: 1, y1: 9, x2: 33, y2: 9, stroke: colour, 'stroke-width': width,
                'stroke-dasharray': dash || 'none'}]
        ]);
    }

    function pointSwatch(symbol) {
        const r = 7;
        const points = [];
        for (let i = 0; i < symbol.points; i++) {
            const a = symbol.angle + (2 * Math.PI * i) / symbol.points;
            points.push(`${17 + r * Math.sin(a)},${9 - r * Math.cos(a)}`);
        }
        return svg([['polygon', {points: points.join(' '), fill: symbol.colour, stroke: '#fff'}]]);
    }

    const LEGEND = [
        ['Site boundary', () => lineSwatch('#5d4037', 2.5, '7 4')],
        ['Haul road (two-way)', () => lineSwatch(ROAD, 5)],
        ['One-lane road', () => lineSwatch(ONE_LANE, 4, '7 4')],
        ['Road node', () => svg([['circle', {cx: 17, cy: 9, r: 4, fill: '#fff', stroke: ROAD, 'stroke-width': 2}]])],
        ['Loading unit', () => pointSwatch(DESTINATION_SYMBOLS.loadingUnit)],
        ['Crusher', () => pointSwatch(DESTINATION_SYMBOLS.crusher)],
        ['Waste dump', () => pointSwatch(DESTINATION_SYMBOLS.waste_dump)],
        ['Stockpile', () => pointSwatch(DESTINATION_SYMBOLS.stockpile)],
        ['Area (park, workshop, fuel)', () => svg([['rect', {
            x: 2, y: 2, width: 30, height: 14, fill: 'rgba(96,125,139,0.16)', stroke: '#607d8b'
        }]])],
        ...['exclusion', 'speedLimit', 'controlledAccess', 'trafficPermission', 'lowTraction'].map(
            (name) => [`Zone: ${POLICY_LABELS[name]}`, () => zoneSwatch(POLICY_COLOURS[name], 'active')]
        ),
        ['Zone pending (not yet active)', () => zoneSwatch('#616161', 'pending')],
        ['Zone pending delete', () => zoneSwatch('#616161', 'pending_delete')]
    ];

    function fillLegend(list) {
        LEGEND.forEach(([text, swatch]) => {
            const item = document.createElement('li');
            item.appendChild(swatch());
            item.appendChild(document.createTextNode(text));
            list.appendChild(item);
        });
    }

    function fillZoneList(list, zones, urlTemplate) {
        if (!zones.length) {
            const item = document.createElement('li');
            item.textContent = 'No zones.';
            list.appendChild(item);
        }
        zones.forEach((zone) => {
            const p = zone.getProperties();
            const item = document.createElement('li');
            const chip = document.createElement('span');
            chip.className = 'zone-chip';
            chip.style.background = POLICY_COLOURS[dominantPolicy(p.policies)];
            const link = document.createElement('a');
            link.href = urlTemplate.replace('00000000-0000-0000-0000-000000000000', p.zoneId);
            link.textContent = p.name;
            const details = document.createElement('div');
            details.className = 'zone-status';
            details.textContent = `${STATUS_LABELS[p.status] || p.status} · ${policySummary(p.policies)}`;
            item.append(chip, link, details);
            list.appendChild(item);
        });
    }

    // --- the map ----------------------------------------------------------------------------

    function init() {
        const target = document.getElementById('site-map');
        const data = JSON.parse(document.getElementById('site-map-data').textContent);
        siteDefaultKmh = data.haulmind.site.defaultSpeedKmh;
        const features = readFeatures(data);
        const layers = buildLayers(features);
        const map = new ol.Map({
            target: target,
            layers: layers,
            view: new ol.View({maxZoom: 22}),
            controls: ol.control.defaults.defaults().extend([new ol.control.ScaleLine()])
        });
        // Fit the working mine (roads, zones, destinations), not the whole lease: a boundary
        // drawn generously around the pit would leave the roads too small to read.
        const content = ol.extent.createEmpty();
        layers.filter((l) => l.get('name') !== 'boundary').forEach((l) => {
            ol.extent.extend(content, l.getSource().getExtent());
        });
        const boundary = layers.find((l) => l.get('name') === 'boundary').getSource().getExtent();
        const extent = ol.extent.isEmpty(content) ? boundary : content;
        if (!ol.extent.isEmpty(extent)) {
            map.getView().fit(extent, {padding: [50, 50, 50, 50]});
        }
        if (!ol.extent.isEmpty(boundary)) {
            map.addControl(new ol.control.ZoomToExtent({
                extent: boundary, label: '\u2922', tipLabel: 'Show the whole site boundary'
            }));
        }
        bindTooltip(map, document.getElementById('site-map-tooltip'));
        fillLegend(document.getElementById('site-map-legend'));
        const zones = features.filter((f) => f.get('featureType') === 'policyZone');
        fillZoneList(document.getElementById('site-map-zones'), zones, target.dataset.zoneUrl);
        window.haulmindSiteMap = map;  // for the browser tests and the console
    }

    document.addEventListener('DOMContentLoaded', init);
})();
