// The page's view in its URL: every choice a user makes round-trips through the query string, so a
// copied link opens the same view (pure functions; main.js reads it at load and writes it on change).
import { DEFAULT_RANGE, TIME_RANGES } from './ranges.js';

export const WINDOW_CHOICES = ['latest', 'current'];
export const BLOCK_SORTS = ['quantity', 'notional'];
export const VIEW_DEFAULTS = { symbol: null, window: 'latest', range: DEFAULT_RANGE, blocks: 'quantity', map: null };
/** A map framing in the URL: latitude,longitude,zoom. */
const MAP_RE = /^(-?\d{1,2}(?:\.\d+)?),(-?\d{1,3}(?:\.\d+)?),(\d{1,2}(?:\.\d+)?)$/;

const choice = (value, choices, fallback) => (choices.includes(value) ? value : fallback);

/** The map framing of a `map=lat,lng,zoom` value, or null when it is missing or out of range. */
export function parseMapView(text) {
  const m = MAP_RE.exec(text ?? '');
  if (!m) return null;
  const [latitude, longitude, zoom] = m.slice(1).map(Number);
  if (Math.abs(latitude) > 85 || Math.abs(longitude) > 180 || zoom > 22) return null;
  return { latitude, longitude, zoom };
}

/** `map=` text of a framing: 4 decimals (about 10 m), zoom to 0.01. */
export function formatMapView(view) {
  return view ? `${view.latitude.toFixed(4)},${view.longitude.toFixed(4)},${view.zoom.toFixed(2)}` : null;
}

/** The view a query string asks for; unknown or malformed values fall back to the defaults. */
export function readView(search) {
  const q = new URLSearchParams(search);
  return {
    symbol: q.get('symbol') || null,
    window: choice(q.get('window'), WINDOW_CHOICES, VIEW_DEFAULTS.window),
    range: choice(q.get('range'), TIME_RANGES.map((r) => r.id), VIEW_DEFAULTS.range),
    blocks: choice(q.get('blocks'), BLOCK_SORTS, VIEW_DEFAULTS.blocks),
    map: parseMapView(q.get('map')),
  };
}

/** The query string of a view (`?symbol=...&window=...`); the symbol always, the rest when not the default. */
export function writeView(view) {
  const q = new URLSearchParams();
  if (view.symbol) q.set('symbol', view.symbol);
  for (const key of ['window', 'range', 'blocks']) if (view[key] && view[key] !== VIEW_DEFAULTS[key]) q.set(key, view[key]);
  const map = formatMapView(view.map);
  if (map) q.set('map', map);
  const text = q.toString().replaceAll('%2C', ',');
  return text ? `?${text}` : '';
}
