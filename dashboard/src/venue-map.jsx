// The kepler.gl map of the venues' matching-engine locations.
//
// A small React/Redux island inside the (plain JS) dashboard: one KeplerGl
// instance, read-only (no side panel), on an offline base map (see
// offline-basemap.js). Each venue is a point sized by the latest window's
// notional and coloured dark (ATS/SDP) vs lit (exchange). `update()` replaces
// the dataset in place, keeping the user's pan/zoom. `highlight()` rings the venues
// of recent venue alerts: a second dataset with its own outline-only point layer
// (restyling single points of the first layer is not cheap in kepler.gl).
import { addDataToMap, removeDataset, replaceDataInMap } from '@kepler.gl/actions';
import { KeplerGl } from '@kepler.gl/components';
import { enhanceReduxMiddleware, keplerGlReducer } from '@kepler.gl/reducers';
import { createRoot } from 'react-dom/client';
import { Provider } from 'react-redux';
import { applyMiddleware, combineReducers, createStore } from 'redux';
import { keplerOfflineMapStyle, OFFLINE_STYLE_ID } from './offline-basemap.js';

export const MAP_ID = 'venues-map';
export const DATASET_ID = 'venues';
export const ALERT_DATASET_ID = 'alerted-venues';
/** The ring around an alerted venue: white, thick, drawn over the venue points (the severity is in the tooltip). */
export const ALERT_RING_COLOR = [255, 255, 255];
export const DARK_COLOR = '#a855f7';
export const LIT_COLOR = '#f59e0b';

/** Initial view: fits the New Jersey data centers and Aurora, IL. */
export const INITIAL_VIEW = { latitude: 41.0, longitude: -81.2, zoom: 5.2, pitch: 0, bearing: 0 };

const FIELDS = [
  { name: 'mpid', type: 'string', analyzerType: 'STRING' },
  { name: 'name', type: 'string', analyzerType: 'STRING' },
  { name: 'liquidity', type: 'string', analyzerType: 'STRING' },
  { name: 'venue_type', type: 'string', analyzerType: 'STRING' },
  { name: 'data_center', type: 'string', analyzerType: 'STRING' },
  { name: 'notional', type: 'real', analyzerType: 'FLOAT' },
  { name: 'trade_count', type: 'integer', analyzerType: 'INT' },
  { name: 'latitude', type: 'real', analyzerType: 'FLOAT' },
  { name: 'longitude', type: 'real', analyzerType: 'FLOAT' },
];

/**
 * kepler.gl dataset from the map points computed by metrics.venueMapPoints().
 * Many venues share a data center (same coordinates), so rows go largest first:
 * deck.gl draws later rows on top, and co-located venues show as nested rings.
 */
export function toKeplerDataset(points) {
  const ordered = [...points].sort((a, b) => (Number(b.notional) || 0) - (Number(a.notional) || 0));
  return {
    info: { id: DATASET_ID, label: 'Venues: latest window notional' },
    data: {
      fields: FIELDS.map((f) => ({ ...f, format: '' })),
      rows: ordered.map((p) => [
        p.mpid, p.name, p.is_dark ? 'Dark' : 'Lit', p.venue_type, p.data_center,
        Number(p.notional) || 0, Number(p.trade_count) || 0, p.latitude, p.longitude,
      ]),
    },
  };
}

/** The saved-map config: one point layer, colour = Dark/Lit (ordinal), size = notional (sqrt); `view`: the framing. */
export function venueLayerConfig(view = INITIAL_VIEW) {
  return {
    version: 'v1',
    config: {
      visState: {
        layers: [
          {
            id: 'venue-points',
            type: 'point',
            config: {
              dataId: DATASET_ID,
              label: 'Venues (size: notional, colour: dark/lit)',
              color: [168, 85, 247],
              columns: { lat: 'latitude', lng: 'longitude' },
              isVisible: true,
              visConfig: {
                radius: 14,
                fixedRadius: false,
                opacity: 0.8,
                outline: true,
                thickness: 1,
                strokeColor: [15, 23, 42],
                filled: true,
                radiusRange: [6, 64],
                colorRange: {
                  name: 'Dark vs lit',
                  type: 'custom',
                  category: 'Custom',
                  colors: [DARK_COLOR, LIT_COLOR],
                },
              },
            },
            visualChannels: {
              colorField: { name: 'liquidity', type: 'string' },
              colorScale: 'ordinal',
              sizeField: { name: 'notional', type: 'real' },
              sizeScale: 'sqrt',
            },
          },
        ],
        interactionConfig: {
          tooltip: {
            enabled: true,
            fieldsToShow: {
              [DATASET_ID]: [
                { name: 'mpid', format: null },
                { name: 'name', format: null },
                { name: 'liquidity', format: null },
                { name: 'data_center', format: null },
                { name: 'notional', format: null },
                { name: 'trade_count', format: null },
              ],
            },
          },
        },
      },
      mapState: { ...INITIAL_VIEW, ...view },
      mapStyle: { styleType: OFFLINE_STYLE_ID },
    },
  };
}

const ALERT_FIELDS = [
  { name: 'mpid', type: 'string', analyzerType: 'STRING' },
  { name: 'name', type: 'string', analyzerType: 'STRING' },
  { name: 'severity', type: 'string', analyzerType: 'STRING' },
  { name: 'alerts', type: 'string', analyzerType: 'STRING' },
  { name: 'alert_count', type: 'integer', analyzerType: 'INT' },
  { name: 'latitude', type: 'real', analyzerType: 'FLOAT' },
  { name: 'longitude', type: 'real', analyzerType: 'FLOAT' },
];

/** kepler.gl dataset of the alerted venues (points from alerts.venueHighlights). */
export function toAlertDataset(points) {
  return {
    info: { id: ALERT_DATASET_ID, label: 'Venue alerts' },
    data: {
      fields: ALERT_FIELDS.map((f) => ({ ...f, format: '' })),
      rows: points.map((p) => [p.mpid, p.name, p.severity, p.alerts, p.alert_count, p.latitude, p.longitude]),
    },
  };
}

/** The alert rings' layer: outline-only points of a fixed radius, larger than most venue points. */
export function alertLayerConfig() {
  return {
    version: 'v1',
    config: {
      visState: {
        layers: [
          {
            id: 'alerted-venues',
            type: 'point',
            config: {
              dataId: ALERT_DATASET_ID,
              label: 'Venue alerts (ring)',
              color: ALERT_RING_COLOR,
              columns: { lat: 'latitude', lng: 'longitude' },
              isVisible: true,
              visConfig: {
                radius: 30, fixedRadius: false, opacity: 1, outline: true, thickness: 4,
                strokeColor: ALERT_RING_COLOR, filled: false,
              },
            },
            visualChannels: { colorField: null, sizeField: null, strokeColorField: null },
          },
        ],
        interactionConfig: {
          tooltip: {
            enabled: true,
            fieldsToShow: {
              [ALERT_DATASET_ID]: [
                { name: 'mpid', format: null },
                { name: 'severity', format: null },
                { name: 'alerts', format: null },
              ],
            },
          },
        },
      },
    },
  };
}

function createMapStore(view) {
  const customizedKeplerGlReducer = keplerGlReducer.initialState({
    uiState: { readOnly: true, activeSidePanel: null, currentModal: null },
    mapStyle: { styleType: OFFLINE_STYLE_ID, mapStylesReplaceDefault: true, mapStyles: {} },
    mapState: { ...INITIAL_VIEW, ...view },
  });
  const reducers = combineReducers({ keplerGl: customizedKeplerGlReducer });
  return createStore(reducers, {}, applyMiddleware(...enhanceReduxMiddleware([])));
}

/** How long the framing must rest before onView hears of it (ms): a drag reports once, at its end. */
const VIEW_SETTLE_MS = 400;

/**
 * Mount the map into `element` and return a controller with `update(points)`.
 * The first update adds the dataset and layer; later ones replace the rows only.
 * `view` ({latitude, longitude, zoom}, optional) is the opening framing; `onView(view)` hears of each
 * framing the user pans or zooms to (after it settles).
 */
export function createVenueMap(element, { view = null, onView = null } = {}) {
  const opening = { ...INITIAL_VIEW, ...view };
  const store = createMapStore(opening);
  let reported = `${opening.latitude},${opening.longitude},${opening.zoom}`;
  element.dataset.view = reported; // the framing shown (for tests and curious users)
  let settle = null;
  store.subscribe(() => {
    const m = store.getState().keplerGl?.[MAP_ID]?.mapState;
    if (!m || !onView) return;
    const now = `${m.latitude},${m.longitude},${m.zoom}`;
    if (now === reported) return;
    clearTimeout(settle);
    settle = setTimeout(() => {
      reported = now;
      element.dataset.view = now;
      onView({ latitude: m.latitude, longitude: m.longitude, zoom: m.zoom });
    }, VIEW_SETTLE_MS);
  });
  const root = createRoot(element);
  const size = () => ({ width: element.clientWidth || 600, height: element.clientHeight || 400 });
  const render = () => {
    const { width, height } = size();
    root.render(
      <Provider store={store}>
        <KeplerGl
          id={MAP_ID}
          width={width}
          height={height}
          mapboxApiAccessToken=""
          mapStyles={[keplerOfflineMapStyle()]}
          mapStylesReplaceDefault
          appName="Dark pool venues"
        />
      </Provider>,
    );
  };
  render();
  new ResizeObserver(() => render()).observe(element);

  // Actions sent before KeplerGl has registered its instance are dropped, so
  // updates wait until the instance exists in the store.
  let added = false;
  let pending = null;
  const ready = () => Boolean(store.getState().keplerGl?.[MAP_ID]?.visState);
  const apply = (points) => {
    const dataset = toKeplerDataset(points);
    if (!added) {
      store.dispatch(addDataToMap({
        datasets: [dataset],
        options: { centerMap: false, readOnly: true, keepExistingConfig: false },
        config: venueLayerConfig(opening),
      }));
      added = true;
    } else {
      store.dispatch(replaceDataInMap({
        datasetToReplaceId: DATASET_ID,
        datasetToUse: dataset,
        options: { keepExistingConfig: true, centerMap: false },
      }));
    }
    element.dataset.points = String(points.length);
    element.dataset.totalNotional = String(Math.round(points.reduce((a, p) => a + (Number(p.notional) || 0), 0)));
    element.dataset.updatedAt = new Date().toISOString();
    if (!element.dataset.firstDrawnMs) { // time to the map with data (bench, tests)
      performance.mark('darkpool:map');
      element.dataset.firstDrawnMs = String(Math.round(performance.now()));
    }
    flushRings(); // rings asked for before the venues layer existed
  };
  const unsubscribe = store.subscribe(() => {
    if (pending && ready()) {
      const points = pending;
      pending = null;
      unsubscribe();
      apply(points);
    }
  });
  // the alert rings: added, replaced or removed once the venues layer exists (so it stays on top)
  let ringsShown = false;
  let pendingRings = null;
  const applyRings = (points) => {
    if (!points.length) {
      if (ringsShown) store.dispatch(removeDataset(ALERT_DATASET_ID));
      ringsShown = false;
    } else if (!ringsShown) {
      store.dispatch(addDataToMap({
        datasets: [toAlertDataset(points)],
        options: { centerMap: false, readOnly: true, keepExistingConfig: true },
        config: alertLayerConfig(),
      }));
      ringsShown = true;
    } else {
      store.dispatch(replaceDataInMap({
        datasetToReplaceId: ALERT_DATASET_ID,
        datasetToUse: toAlertDataset(points),
        options: { keepExistingConfig: true, centerMap: false },
      }));
    }
    element.dataset.highlighted = points.map((p) => p.mpid).join(',');
  };
  const flushRings = () => {
    if (pendingRings && added) {
      const points = pendingRings;
      pendingRings = null;
      applyRings(points);
    }
  };
  store.subscribe(flushRings);
  return {
    store,
    /** Ring the alerted venues (array from alerts.venueHighlights; empty: no rings). */
    highlight(points) {
      const wanted = points.map((p) => `${p.mpid}:${p.severity}:${p.alert_count}`).join(',');
      if (wanted === element.dataset.highlightState) return;
      element.dataset.highlightState = wanted;
      pendingRings = points;
      flushRings();
    },
    /** Replace the venues dataset with fresh points (array from metrics.venueMapPoints). */
    update(points) {
      if (ready()) apply(points);
      else pending = points;
    },
  };
}
