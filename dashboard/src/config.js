// Dashboard settings in one place.

/** Re-render at most this often, however fast panes arrive (ms). */
export const RENDER_THROTTLE_MS = 1000;
/** Full refresh from the REST API even without stream events (ms): keeps freshness honest. */
export const POLL_INTERVAL_MS = 15000;
/** Data older than this (newest pane's emitted_at vs. the browser clock) is shown as stale (s). */
export const STALE_AFTER_SECONDS = 120;
/** Stream reconnect backoff when the browser gave up on the EventSource (ms). */
export const RECONNECT_MIN_MS = 1000;
export const RECONNECT_MAX_MS = 15000;
/** The most points (windows × lines) an over-time chart draws: a long range asks for every k-th window (ranges.js). */
export const MAX_CHART_POINTS = 2000;
/** The window period assumed until /api/v1/status reports it (window_period_ms). */
export const DEFAULT_PERIOD_MS = 60_000;
/** Rows in the market ranking and the recent block table. */
export const RANKING_LIMIT = 25;
export const BLOCK_ROWS = 12;
/** The block table ranks the block panes of this many newest windows (newest first). */
export const BLOCK_WINDOWS = 2;
/** Venues drawn as their own line in the liquidity-over-time chart; the rest are summed as "Other". */
export const TOP_VENUE_LINES = 6;

/** Alerts read at load (GET /api/v1/alerts?limit=), rows shown in the alert feed, alerts kept in the page. */
export const ALERT_FETCH_LIMIT = 200;
export const ALERT_ROWS = 50;
export const MAX_ALERTS = 1000;
/** The map rings the venues of venue alerts whose window ended at most this long before the map's window end (min). */
export const ALERT_MAP_MINUTES = 15;

export const DARK_COLOR = '#a855f7';
export const LIT_COLOR = '#f59e0b';
/** Line colours of the per-venue series: none of them violet or amber, which mean dark and lit. */
export const PALETTE = ['#38bdf8', '#22c55e', '#f43f5e', '#e2e8f0', '#14b8a6', '#fb7185', '#84cc16', '#0ea5e9'];
