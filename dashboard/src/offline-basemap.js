// An offline base map for kepler.gl / maplibre-gl: a MapLibre style whose only
// source is an inline GeoJSON of the US state outlines (from the us-atlas npm
// package, bundled at build time). No tiles, glyphs, sprites or style URLs, so
// the map never asks the internet for anything.
import { feature, mesh } from 'topojson-client';
import statesTopology from 'us-atlas/states-10m.json';

/** State FIPS codes drawn a shade lighter: the venues' data centers sit in NJ, NY and IL. */
export const HIGHLIGHT_STATES = new Set(['34', '36', '17']);

export const OFFLINE_STYLE_ID = 'darkpool-offline';

/** GeoJSON FeatureCollection of the US states, each tagged `highlight` when it hosts a data center. */
export function stateFeatures() {
  const collection = feature(statesTopology, statesTopology.objects.states);
  for (const f of collection.features) {
    f.properties = { ...f.properties, highlight: HIGHLIGHT_STATES.has(String(f.id)) };
  }
  return collection;
}

/** The state borders as one MultiLineString (shared borders drawn once). */
export function stateBorders() {
  return mesh(statesTopology, statesTopology.objects.states, (a, b) => a !== b);
}

/** A self-contained MapLibre style (version 8) with the outlines and a dark background. */
export function offlineMapStyle() {
  return {
    version: 8,
    name: 'Dark pool offline outline',
    sources: {
      states: { type: 'geojson', data: stateFeatures() },
      borders: { type: 'geojson', data: stateBorders() },
    },
    layers: [
      { id: 'background', type: 'background', paint: { 'background-color': '#0b1220' } },
      {
        id: 'states-fill',
        type: 'fill',
        source: 'states',
        paint: {
          'fill-color': ['case', ['get', 'highlight'], '#1e293b', '#131c2e'],
          'fill-opacity': 1,
        },
      },
      { id: 'state-borders', type: 'line', source: 'borders', paint: { 'line-color': '#475569', 'line-width': 0.8 } },
    ],
  };
}

/** The style entry kepler.gl expects in its `mapStyles` prop (style object given, so nothing is fetched). */
export function keplerOfflineMapStyle() {
  return {
    id: OFFLINE_STYLE_ID,
    label: 'Offline outline (US states)',
    url: null,
    icon: '',
    layerGroups: [],
    style: offlineMapStyle(),
  };
}
