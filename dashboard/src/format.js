// Number and time formatting for the dashboard (pure functions).

const DASH = '—';

/** $1.23B / $4.5M / $12.3K / $950 */
export function money(value) {
  if (value === null || value === undefined || !Number.isFinite(Number(value))) return DASH;
  const v = Number(value);
  const abs = Math.abs(v);
  if (abs >= 1e9) return `$${(v / 1e9).toFixed(2)}B`;
  if (abs >= 1e6) return `$${(v / 1e6).toFixed(2)}M`;
  if (abs >= 1e3) return `$${(v / 1e3).toFixed(1)}K`;
  return `$${v.toFixed(0)}`;
}

/** A price with cents: $189.23 */
export function price(value) {
  if (value === null || value === undefined || !Number.isFinite(Number(value))) return DASH;
  return `$${Number(value).toFixed(2)}`;
}

/** A fraction 0..1 as a percentage: 0.4312 -> 43.1% */
export function pct(fraction, digits = 1) {
  if (fraction === null || fraction === undefined || !Number.isFinite(Number(fraction))) return DASH;
  return `${(Number(fraction) * 100).toFixed(digits)}%`;
}

/** An integer with thousands separators. */
export function int(value) {
  if (value === null || value === undefined || !Number.isFinite(Number(value))) return DASH;
  return Math.round(Number(value)).toLocaleString('en-US');
}

/** HH:MM:SS of an ISO time, in UTC. */
export function clock(iso) {
  if (!iso) return DASH;
  const d = new Date(iso);
  if (Number.isNaN(d.getTime())) return DASH;
  return `${d.toISOString().slice(11, 19)} UTC`;
}

/** HH:MM of an ISO time, in UTC (chart labels). */
export function hhmm(iso) {
  if (!iso) return DASH;
  return new Date(iso).toISOString().slice(11, 16);
}

/** "14:30–14:35 UTC" for a window. */
export function windowLabel(start, end) {
  if (!start || !end) return 'no window yet';
  return `${hhmm(start)}–${hhmm(end)} UTC`;
}

/** A duration in seconds as "12 s", "3 min", "2 h". */
export function age(seconds) {
  if (seconds === null || seconds === undefined || !Number.isFinite(seconds)) return DASH;
  const s = Math.max(0, seconds);
  if (s < 90) return `${Math.round(s)} s`;
  if (s < 5400) return `${Math.round(s / 60)} min`;
  return `${(s / 3600).toFixed(1)} h`;
}
