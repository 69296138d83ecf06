// Time ranges of the over-time charts and the window step that keeps each chart small (pure functions).
//
// A range is a span before the newest window end. Serving keeps 24 hours of windows, one per period
// (1 minute by default); a chart draws one point per window and line, so a long range asks the API
// for every k-th window only (timeseries `step`): the smallest step, a whole multiple of the period,
// that keeps windows × lines at or under the point budget.

/** The ranges offered, in the order shown; `minutes: null` is "since the session's open". */
export const TIME_RANGES = [
  { id: '15m', label: '15 min', minutes: 15 },
  { id: '1h', label: '1 h', minutes: 60 },
  { id: '6h', label: '6 h', minutes: 360 },
  { id: '24h', label: '24 h', minutes: 1440 },
  { id: 'session', label: 'Session', minutes: null },
];
export const DEFAULT_RANGE = '1h';
/** Steps tried, as multiples of the window period, smallest first. */
export const STEP_MULTIPLES = [1, 2, 3, 5, 10, 15, 20, 30, 60, 120, 240, 480, 1440];
/** The regular session opens at 09:30 New York time. */
export const SESSION_OPEN = { hour: 9, minute: 30, timeZone: 'America/New_York' };

/** The range of this id, or the default one. */
export function timeRange(id) {
  return TIME_RANGES.find((r) => r.id === id) ?? TIME_RANGES.find((r) => r.id === DEFAULT_RANGE);
}

/**
 * The window step (ms) for `spanMs` of history: the smallest multiple of `periodMs` in STEP_MULTIPLES
 * with ceil(span / step) × lines ≤ maxPoints (the largest one when none is small enough).
 */
export function rangeStep(spanMs, periodMs, lines, maxPoints) {
  const perLine = Math.max(1, Math.floor(maxPoints / Math.max(1, lines)));
  for (const k of STEP_MULTIPLES) {
    if (Math.ceil(spanMs / (periodMs * k)) <= perLine) return periodMs * k;
  }
  return periodMs * STEP_MULTIPLES[STEP_MULTIPLES.length - 1];
}

/** Offset (ms) of `timeZone`'s wall clock from UTC at `ms`. */
export function zoneOffsetMs(ms, timeZone) {
  const parts = Object.fromEntries(new Intl.DateTimeFormat('en-US', {
    timeZone, hourCycle: 'h23', year: 'numeric', month: '2-digit', day: '2-digit',
    hour: '2-digit', minute: '2-digit', second: '2-digit',
  }).formatToParts(new Date(ms)).map((p) => [p.type, p.value]));
  const wall = Date.UTC(Number(parts.year), Number(parts.month) - 1, Number(parts.day),
    Number(parts.hour), Number(parts.minute), Number(parts.second));
  return wall - Math.floor(ms / 1000) * 1000;
}

/** Epoch ms of the latest session open (09:30 New York) at or before `ms`. */
export function sessionOpenBefore(ms, open = SESSION_OPEN) {
  const local = new Date(ms + zoneOffsetMs(ms, open.timeZone));
  for (let back = 0; back < 3; back += 1) {
    const wall = Date.UTC(local.getUTCFullYear(), local.getUTCMonth(), local.getUTCDate() - back, open.hour, open.minute);
    const candidate = wall - zoneOffsetMs(wall, open.timeZone);
    const utc = wall - zoneOffsetMs(candidate, open.timeZone);
    if (utc <= ms) return utc;
  }
  return ms;
}

/**
 * What the over-time charts ask for: {sinceMs, spanMs, stepMs} for range `id` before `endMs`
 * (the newest window end), never more than `maxSpanMs` (serving's retention).
 */
export function rangeQuery(id, endMs, periodMs, lines, maxPoints, maxSpanMs = 24 * 3_600_000) {
  const range = timeRange(id);
  const wanted = range.minutes === null ? endMs - sessionOpenBefore(endMs) : range.minutes * 60_000;
  const spanMs = Math.max(periodMs, Math.min(wanted, maxSpanMs));
  return { sinceMs: endMs - spanMs, spanMs, stepMs: rangeStep(spanMs, periodMs, lines, maxPoints) };
}
