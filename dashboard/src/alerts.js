// The live alert feed's rules (pure functions): labels, severity looks, merging and order.
//
// The alert record, its kinds and severities are darkpool.contracts' (section "alerts",
// docs/alerts.md); tests/browser/test_alert_rules.py checks that the names here match it.
// The serving API keeps one alert per (symbol, kind, window_start) and never lowers one
// (docs/serving.md, "Alerts"); the page keeps the same rule for what the stream pushes.
import { hhmm, int, pct } from './format.js';

/** Severities in rising order (darkpool.contracts.SEVERITIES). */
export const SEVERITIES = ['low', 'medium', 'high'];

/** Kinds (darkpool.contracts.ALERT_KINDS): a human label, whether the alert names a venue, the figure's format. */
export const ALERT_KINDS = {
  dark_share_surge: { label: 'Dark-share surge', venue: false, figure: 'dark share', format: (v) => pct(v) },
  block_cluster: { label: 'Block cluster', venue: true, figure: 'block shares', format: (v) => `${int(v)} sh` },
  venue_concentration: { label: 'Venue concentration', venue: true, figure: 'top venue share', format: (v) => pct(v) },
};

/**
 * How a severity looks: colour (Okabe–Ito, told apart with the common colour-vision deficiencies),
 * a shape that says the same without colour, and the text itself.
 */
export const SEVERITY_LOOK = {
  low: { colour: '#56b4e9', shape: '●', text: 'LOW', pointStyle: 'circle' },
  medium: { colour: '#f0e442', shape: '◆', text: 'MEDIUM', pointStyle: 'rectRot' },
  high: { colour: '#d55e00', shape: '▲', text: 'HIGH', pointStyle: 'triangle' },
};

/** The rank of a severity (low 0 < medium 1 < high 2; -1 for an unknown one). */
export function severityRank(severity) {
  return SEVERITIES.indexOf(severity);
}

/** The key of an alert, as darkpool.contracts.alert_key: symbol|kind|window_start. */
export function alertKey(a) {
  return `${a.symbol}|${a.kind}|${a.window_start}`;
}

/** A human label of an alert's kind (the kind itself when unknown). */
export function kindLabel(kind) {
  return ALERT_KINDS[kind]?.label ?? kind;
}

/** Whether the alert names a venue (block_cluster, venue_concentration). */
export function isVenueAlert(a) {
  return Boolean(ALERT_KINDS[a.kind]?.venue && a.venue);
}

/**
 * Keep `record` in `store` (a Map by alertKey) when it is new, raises the held alert, or has the same
 * severity emitted later; a lower one never replaces a higher one. Returns true when it was kept.
 */
export function mergeAlert(store, record) {
  const key = alertKey(record);
  const held = store.get(key);
  if (held) {
    const diff = severityRank(record.severity) - severityRank(held.severity);
    if (diff < 0 || (diff === 0 && Date.parse(record.emitted_at) <= Date.parse(held.emitted_at))) return false;
  }
  store.set(key, record);
  return true;
}

/** Newest first, as the API orders them: emitted_at desc, then window_start desc, symbol, kind. */
export function compareAlerts(a, b) {
  return (Date.parse(b.emitted_at) - Date.parse(a.emitted_at))
    || (Date.parse(b.window_start) - Date.parse(a.window_start))
    || a.symbol.localeCompare(b.symbol) || a.kind.localeCompare(b.kind);
}

/** The feed's rows: newest first, at most `limit`. */
export function feedRows(alerts, limit) {
  return [...alerts].sort(compareAlerts).slice(0, limit);
}

/** Drop the oldest alerts (by the feed order) beyond `max` from the store. */
export function pruneAlerts(store, max) {
  if (store.size <= max) return;
  for (const a of feedRows(store.values(), Infinity).slice(max)) store.delete(alertKey(a));
}

/** The figures of an alert as text: observed, baseline (± spread) in the kind's units, and the score. */
export function alertFigures(a) {
  const format = ALERT_KINDS[a.kind]?.format ?? ((v) => String(v));
  return {
    observed: format(a.observed),
    baseline: format(a.baseline),
    score: Number.isFinite(Number(a.score)) ? Number(a.score).toFixed(1) : '—',
  };
}

/** "14:30–14:35" of the alert's window (UTC). */
export function alertWindow(a) {
  return `${hhmm(a.window_start)}–${hhmm(a.window_end)}`;
}

/**
 * Markers of `symbol`'s alerts on a chart whose x labels are window starts (ISO): one per alert whose
 * window is on the chart, at its window start, the highest severity first when two share a window.
 * Returns [{index, alert}] (index into `windowStarts`).
 */
export function alertMarkers(alerts, symbol, windowStarts) {
  const index = new Map(windowStarts.map((s, i) => [Date.parse(s), i]));
  return [...alerts]
    .filter((a) => a.symbol === symbol && index.has(Date.parse(a.window_start)))
    .sort((a, b) => severityRank(b.severity) - severityRank(a.severity) || compareAlerts(a, b))
    .map((a) => ({ index: index.get(Date.parse(a.window_start)), alert: a }));
}

/**
 * Venues to highlight on the map: the venues named by venue alerts whose window ends within
 * `minutes` before `windowEnd` (or later), any symbol; per venue its highest severity and its alerts.
 * Returns [{mpid, severity, alerts: [...]}] ordered by MPID.
 */
export function alertedVenues(alerts, windowEnd, minutes) {
  const end = Date.parse(windowEnd);
  const from = Number.isFinite(end) ? end - minutes * 60_000 : -Infinity;
  const venues = new Map();
  for (const a of alerts) {
    if (!isVenueAlert(a) || Date.parse(a.window_end) < from) continue;
    const v = venues.get(a.venue) ?? { mpid: a.venue, severity: a.severity, alerts: [] };
    if (severityRank(a.severity) > severityRank(v.severity)) v.severity = a.severity;
    v.alerts.push(a);
    venues.set(a.venue, v);
  }
  return [...venues.values()].sort((a, b) => a.mpid.localeCompare(b.mpid));
}

/**
 * The map's highlight points: each alerted venue (from alertedVenues) at its registry location, with its
 * highest severity and a one-line summary of its alerts (symbols and kinds). Venues not in the registry are left out.
 */
export function venueHighlights(alerted, registry) {
  const where = new Map(registry.map((v) => [v.mpid, v]));
  return alerted.filter((v) => where.has(v.mpid)).map((v) => {
    const r = where.get(v.mpid);
    const summary = feedRows(v.alerts, 5).map((a) => `${a.symbol} ${kindLabel(a.kind)} (${a.severity})`).join('; ');
    return { mpid: v.mpid, name: r.name, latitude: r.latitude, longitude: r.longitude, severity: v.severity,
      alerts: summary, alert_count: v.alerts.length };
  });
}
