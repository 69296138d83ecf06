// Dark Pool Liquidity Dashboard: wires the API, the live stream, the charts and the map.
//
// Data flow: REST snapshots (/api/v1/...) drive every figure; the SSE stream
// (/api/v1/stream) says when something changed, and a throttled refresh (at most
// once per RENDER_THROTTLE_MS) re-reads and re-renders. Stream state and data
// freshness are always visible in the header. Alerts (/api/v1/alerts, SSE `alert`
// events) are kept one per symbol|kind|window_start, never lowered, and drawn at
// once: the feed, the markers on the liquidity-over-time chart, the map's rings.
import './style.css';
import { api } from './api.js';
import {
  ALERT_KINDS, SEVERITY_LOOK, alertFigures, alertKey, alertMarkers, alertWindow, alertedVenues, feedRows, isVenueAlert,
  kindLabel, mergeAlert, pruneAlerts, venueHighlights,
} from './alerts.js';
import { createCharts, updateAlertMarkers, updateRankingChart, updateTimeCharts, updateVenueCharts } from './charts.js';
import {
  ALERT_FETCH_LIMIT, ALERT_MAP_MINUTES, ALERT_ROWS, BLOCK_ROWS, BLOCK_WINDOWS, DEFAULT_PERIOD_MS, MAX_ALERTS,
  MAX_CHART_POINTS, POLL_INTERVAL_MS, RANKING_LIMIT, RENDER_THROTTLE_MS, STALE_AFTER_SECONDS, TOP_VENUE_LINES,
} from './config.js';
import { definition } from './definitions.js';
import { downloadText, exportFileName, toCsv } from './export.js';
import { age, clock, int, money, pct, price, windowLabel } from './format.js';
import { LiveStream, throttle } from './live.js';
import {
  ageSeconds, byVenue, darkLitTradeSize, isDark, keepLatest, liquidityOverTime, pruneToNewestWindows, rankBlocks,
  summarize, tradeSizeOverTime, venueMapPoints,
} from './metrics.js';
import { TIME_RANGES, rangeQuery, timeRange } from './ranges.js';
import { readView, writeView } from './view.js';

const $ = (id) => document.getElementById(id);

const state = {
  registry: [],          // GET /api/v1/venues
  venues: {},            // mpid -> registry entry
  symbols: [],
  ...pickView(readView(window.location.search)), // symbol, window, range, blockSort, mapView: the URL's view
  panes: new Map(),      // latest liquidity pane per key of the newest BLOCK_WINDOWS windows (the block table)
  periodMs: DEFAULT_PERIOD_MS, // status.window_period_ms: the unit of the over-time step
  exports: {},           // name -> {columns, rows, parts}: the data behind each table and chart, as shown
  liveCount: 0,
  lastUpdate: null,      // newest emitted_at seen (status or stream)
  serverStale: false,
  health: null,          // status.health: {state: 'ok'|'degraded', reason, since} (the server's broker connection)
  stream: 'connecting',
  map: null,
  windowRows: null,      // all symbols' rows of the shown window (the map's data)
  windowEnd: null,       // the shown window's end (the map's alert rings look back from it)
  alerts: new Map(),     // alertKey -> the highest alert held (alerts.js mergeAlert)
  alertsSince: null,     // newest alert emitted_at seen: the next GET /api/v1/alerts asks from it
  alertsNote: null,      // {topic, note} of status.alerts while the server has no alerts topic
  overTimeLabels: [],    // window starts (ISO) on the liquidity-over-time chart
  refreshing: null,
  again: false,
};

let charts;

/** The page state's part of a view read from the URL (view.js). */
function pickView(view) {
  return { symbol: view.symbol, window: view.window, range: view.range, blockSort: view.blocks, mapView: view.map };
}

/** Write the whole view into the URL (replaceState: a copied link opens the same view). */
function saveView() {
  const query = writeView({
    symbol: state.symbol, window: state.window, range: state.range, blocks: state.blockSort, map: state.mapView,
  });
  const url = `${window.location.pathname}${query}${window.location.hash}`;
  if (url !== `${window.location.pathname}${window.location.search}${window.location.hash}`) {
    window.history.replaceState(null, '', url);
  }
}

/** Keep what `name`'s CSV export downloads: `columns` of `rows`, the file name from `parts`. */
function setExport(name, columns, rows, parts) {
  state.exports[name] = { columns, rows, parts };
}

/** A chart's accessible name: what it shows, as a short text summary. */
function describeChart(id, text) {
  const canvas = $(id);
  canvas.setAttribute('role', 'img');
  canvas.setAttribute('aria-label', text);
  const summary = $(`${id}-summary`);
  if (summary) summary.textContent = text;
}

// --- rendering --------------------------------------------------------------------
function setText(id, text) {
  const el = $(id);
  if (el && el.textContent !== text) el.textContent = text;
}

function renderSymbolOptions() {
  const select = $('symbol-select');
  const wanted = state.symbols.length ? state.symbols.join(',') : '(none)';
  if (select.dataset.options === wanted) return;
  select.dataset.options = wanted;
  select.replaceChildren(...state.symbols.map((s) => new Option(s, s, false, s === state.symbol)));
  if (!state.symbols.length) select.append(new Option('no data yet', '', true, true));
}

function renderSymbolHeadline(record, rows) {
  const s = summarize(rows, state.venues);
  const fig = record ?? s;
  setText('symbol-title', state.symbol ?? 'Symbol');
  for (const el of document.querySelectorAll('.symbol-tag')) el.textContent = state.symbol ?? '';
  setText('sym-dark-share', pct(fig.dark_share));
  setText('sym-hhi', fig.hhi === null || fig.hhi === undefined ? '—' : int(fig.hhi));
  setText('sym-vwap', price(fig.vwap));
  setText('sym-notional', money(fig.notional));
  setText('sym-blocks', int(fig.block_count));
  setText('sym-trades', int(fig.trade_count));
  setText('sym-venues', int(fig.venue_count));
  setText('sym-top-venue', fig.top_venue ? `${fig.top_venue} ${pct(fig.top_venue_share, 0)}` : '—');
}

function renderMarketHeadline(rows) {
  const m = summarize(rows, state.venues);
  setText('mkt-dark-share', pct(m.dark_share));
  setText('mkt-hhi', m.hhi === null ? '—' : int(m.hhi));
  setText('mkt-avg-size', m.avg_trade_size === null ? '—' : `${int(m.avg_trade_size)} sh`);
  setText('mkt-notional', money(m.notional));
  setText('mkt-blocks', int(m.block_count));
  setText('mkt-trades', int(m.trade_count));
  setText('mkt-symbols', int(m.symbol_count));
}

function renderRankingTable(rows) {
  const body = $('ranking-table').tBodies[0];
  if (!rows.length) {
    body.innerHTML = '<tr><td colspan="7" class="empty">No market panes in this window</td></tr>';
    return;
  }
  body.replaceChildren(...rows.map((r, i) => {
    const tr = document.createElement('tr');
    tr.className = `clickable${r.symbol === state.symbol ? ' selected' : ''}`;
    tr.dataset.symbol = r.symbol;
    const cells = [String(i + 1), r.symbol, pct(r.dark_share), int(r.hhi), money(r.notional), int(r.venue_count),
      r.top_venue ?? '—'];
    cells.forEach((text, j) => {
      const td = document.createElement('td');
      td.textContent = text;
      if (j >= 2 && j <= 5) td.className = 'num';
      tr.append(td);
    });
    clickableRow(tr, r.symbol, `#${i + 1} ${r.symbol}: dark share ${pct(r.dark_share)}, HHI ${int(r.hhi)}: select ${
      r.symbol}`);
    return tr;
  }));
}

function renderBlocks() {
  const rows = rankBlocks(state.panes.values(), { by: state.blockSort, limit: BLOCK_ROWS, windows: BLOCK_WINDOWS });
  setExport('blocks', ['window_start', 'window_end', 'symbol', 'venue', 'venue_type', 'block_count', 'block_quantity',
    'block_notional', 'block_share', 'pane_timing', 'pane_index'], rows, ['blocks', `by-${state.blockSort}`,
    rows[0]?.window_start]);
  const body = $('blocks-table').tBodies[0];
  if (!rows.length) {
    body.innerHTML = '<tr><td colspan="8" class="empty">No block prints in the newest windows yet</td></tr>';
    return;
  }
  const focused = document.activeElement?.closest?.('#blocks-table tr[data-key]')?.dataset.key;
  body.replaceChildren(...rows.map((r) => {
    const tr = document.createElement('tr');
    tr.dataset.key = `${r.symbol}|${r.venue}|${r.window_start}`;
    tr.dataset.symbol = r.symbol;
    tr.className = `clickable${r.symbol === state.symbol ? ' selected' : ''}`;
    const dark = isDark(r, state.venues);
    const cells = [windowLabel(r.window_start, r.window_end), r.symbol, null, int(r.block_count),
      int(r.block_quantity), money(r.block_notional), pct(r.block_share), `${r.pane_timing ?? ''} #${r.pane_index ?? 0}`];
    cells.forEach((text, j) => {
      const td = document.createElement('td');
      if (j === 2) {
        const badge = document.createElement('span');
        badge.className = dark ? 'badge-dark' : 'badge-lit';
        badge.textContent = `${r.venue}${dark ? ' (dark)' : ' (lit)'}`;
        td.append(badge);
      } else {
        td.textContent = text;
      }
      if (j >= 3 && j <= 6) td.className = 'num';
      tr.append(td);
    });
    clickableRow(tr, r.symbol, `${r.symbol} on ${r.venue}, window ${windowLabel(r.window_start, r.window_end)}: ${
      int(r.block_count)} blocks, ${int(r.block_quantity)} shares, ${pct(r.block_share)} of the symbol's volume, ${
      r.pane_timing ?? ''} pane: select ${r.symbol}`);
    return tr;
  }));
  if (focused) body.querySelector(`tr[data-key="${CSS.escape(focused)}"]`)?.focus();
}

/** A table row that selects `symbol` on click, Enter or Space, reachable with Tab. */
function clickableRow(tr, symbol, label) {
  tr.tabIndex = 0;
  tr.setAttribute('aria-label', label);
  tr.addEventListener('click', () => selectSymbol(symbol));
  tr.addEventListener('keydown', (e) => {
    if (e.key === 'Enter' || e.key === ' ') {
      e.preventDefault();
      selectSymbol(symbol);
    }
  });
}

/** A severity badge: colour, shape and the severity as text (readable without colour). */
function severityBadge(severity) {
  const look = SEVERITY_LOOK[severity] ?? { colour: '#94a3b8', shape: '?', text: String(severity).toUpperCase() };
  const badge = document.createElement('span');
  badge.className = 'sev-badge';
  badge.dataset.severity = severity;
  badge.style.color = look.colour;
  badge.style.borderColor = look.colour;
  badge.textContent = `${look.shape} ${look.text}`;
  return badge;
}

function renderSeverityLegend() {
  for (const el of document.querySelectorAll('.sev-legend')) {
    const look = SEVERITY_LOOK[el.dataset.severity];
    el.style.color = look.colour;
    el.textContent = `${look.shape} ${look.text.toLowerCase()}`;
  }
  setText('map-alert-minutes', String(ALERT_MAP_MINUTES));
}

function renderAlerts() {
  const body = $('alerts-table').tBodies[0];
  const rows = feedRows(state.alerts.values(), ALERT_ROWS);
  setExport('alerts', rows.length ? Object.keys(rows[0]) : [], rows, ['alerts', rows[0]?.emitted_at]);
  $('alert-feed').dataset.count = String(state.alerts.size);
  if (!rows.length) {
    body.innerHTML = '<tr><td colspan="10" class="empty"></td></tr>';
    const td = body.querySelector('td');
    td.textContent = state.alertsNote ? `No alerts yet: the server has no alerts topic (${state.alertsNote.topic}) yet`
      : 'No alerts yet';
    td.title = state.alertsNote?.note ?? '';
    return;
  }
  const focused = document.activeElement?.closest?.('#alerts-table tr[data-key]')?.dataset.key;
  body.replaceChildren(...rows.map((a) => {
    const tr = document.createElement('tr');
    const key = alertKey(a);
    const look = SEVERITY_LOOK[a.severity];
    const figures = alertFigures(a);
    tr.className = `alert-row clickable${a.symbol === state.symbol ? ' selected' : ''}`;
    Object.assign(tr.dataset, { key, symbol: a.symbol, kind: a.kind, severity: a.severity, venue: a.venue ?? '' });
    clickableRow(tr, a.symbol, `${a.severity} ${kindLabel(a.kind)} alert on ${a.symbol}, window ${alertWindow(a)} UTC`
      + `${isVenueAlert(a) ? `, venue ${a.venue}` : ''}: select ${a.symbol}`);
    const cells = [null, clock(a.emitted_at).replace(' UTC', ''), a.symbol, kindLabel(a.kind), alertWindow(a), null,
      figures.observed, figures.baseline, figures.score, `${a.pane_timing ?? ''} #${a.pane_index ?? 0}`];
    cells.forEach((text, j) => {
      const td = document.createElement('td');
      if (j === 0) {
        td.append(severityBadge(a.severity));
        td.style.borderLeftColor = look?.colour ?? '#94a3b8';
      } else if (j === 5) {
        if (isVenueAlert(a)) {
          const badge = document.createElement('span');
          badge.className = isDark({ venue: a.venue }, state.venues) ? 'badge-dark' : 'badge-lit';
          badge.textContent = a.venue;
          td.append(badge);
        } else {
          td.textContent = '—';
        }
      } else {
        td.textContent = text;
      }
      if (j === 6 || j === 7 || j === 8) td.className = 'num';
      if (j === 6 || j === 7) td.title = ALERT_KINDS[a.kind]?.figure ?? '';
      tr.append(td);
    });
    return tr;
  }));
  if (focused) body.querySelector(`tr[data-key="${CSS.escape(focused)}"]`)?.focus();
}

/** The selected symbol's alert markers on the over-time chart and the alerted venues' rings on the map. */
function renderAlertMarks() {
  updateAlertMarkers(charts, alertMarkers(state.alerts.values(), state.symbol, state.overTimeLabels));
  const rings = venueHighlights(alertedVenues(state.alerts.values(), state.windowEnd, ALERT_MAP_MINUTES), state.registry);
  state.map?.highlight(rings);
}

function takeAlert(record) {
  if (!record?.symbol || !record.kind || !record.window_start) return false;
  if (!mergeAlert(state.alerts, record)) return false;
  if (!state.alertsSince || Date.parse(record.emitted_at) > Date.parse(state.alertsSince)) state.alertsSince = record.emitted_at;
  return true;
}

function renderFreshness() {
  const seconds = ageSeconds(state.lastUpdate);
  const stale = state.serverStale || seconds === null || seconds > STALE_AFTER_SECONDS;
  setText('last-update', clock(state.lastUpdate));
  setText('freshness', age(seconds));
  setText('mkt-freshness', seconds === null ? 'no data' : `${age(seconds)} old`);
  setText('live-count', int(state.liveCount));
  document.body.dataset.stale = String(stale);
  $('freshness').className = `font-mono ${stale ? 'text-amber-400' : 'text-emerald-400'}`;

  const badge = $('stream-status');
  const look = {
    live: ['live', 'bg-emerald-500/20 text-emerald-300'],
    connecting: ['connecting', 'bg-slate-700 text-slate-200'],
    disconnected: ['disconnected', 'bg-red-500/25 text-red-300'],
  }[state.stream];
  const label = state.stream === 'live' && stale ? 'live · stale data' : look[0];
  setText('stream-status', label);
  badge.className = `rounded-full px-3 py-1 text-xs font-semibold uppercase tracking-wide ${
    state.stream === 'live' && stale ? 'bg-amber-500/20 text-amber-300' : look[1]}`;
  document.body.dataset.streamState = state.stream;

  const banner = $('alert-banner');
  let message = '';
  let tone = '';
  const degraded = state.health?.state === 'degraded';
  if (state.stream === 'disconnected') {
    message = 'Live stream disconnected: reconnecting… Figures below are the last ones received.';
    tone = 'border-red-900 bg-red-950/80 text-red-200';
  } else if (degraded) {
    const since = state.health.since ? ` since ${new Date(state.health.since).toLocaleTimeString()}` : '';
    message = `Server degraded${since}: ${state.health.reason ?? 'the broker is unreachable'}. `
      + 'Figures below are the last ones it received; it catches up when the broker is back.';
    tone = 'border-red-900 bg-red-950/80 text-red-200';
  } else if (stale) {
    message = state.lastUpdate
      ? `Data is stale: the newest pane was emitted ${age(seconds)} ago (threshold ${STALE_AFTER_SECONDS} s). Is the pipeline running?`
      : 'No data yet: waiting for the pipeline\u2019s first panes.';
    tone = 'border-amber-900 bg-amber-950/70 text-amber-200';
  }
  banner.dataset.kind = state.stream === 'disconnected' ? 'disconnected' : degraded ? 'degraded' : stale ? 'stale' : 'ok';
  banner.textContent = message;
  banner.className = message ? `border-t px-5 py-2 text-center text-sm font-medium ${tone}` : 'hidden';
}

// --- data -------------------------------------------------------------------------
/** The over-time charts' query for the chosen range before `windowEnd`: {since, step (s), ...rangeQuery}. */
function seriesQuery(windowEnd) {
  if (!windowEnd) return null;
  const q = rangeQuery(state.range, Date.parse(windowEnd), state.periodMs, TOP_VENUE_LINES + 1, MAX_CHART_POINTS);
  const step = q.stepMs > state.periodMs ? Math.round(q.stepMs / 1000) : null; // every window: no step
  return { ...q, since: new Date(q.sinceMs).toISOString(), step, end: windowEnd };
}

/** The over-time panels' subtitle: the range, its span and the step between points. */
function renderRangeNote(q, points) {
  if (!q) return;
  const range = timeRange(state.range);
  const hours = q.spanMs / 3_600_000;
  const span = hours >= 1 ? `${Number(hours.toFixed(1))} h` : `${Math.round(q.spanMs / 60_000)} min`;
  const every = q.stepMs === state.periodMs ? 'every window' : `one window every ${Math.round(q.stepMs / 60_000)} min`;
  for (const el of document.querySelectorAll('.range-note')) {
    el.textContent = `${range.minutes === null ? 'since the session open, ' : ''}${span} · ${every} · ${int(points)} points`;
  }
}

function optional(promise) {
  return promise.catch((err) => {
    if (err.status === 404) return null;
    throw err;
  });
}

async function loadSymbols() {
  const { symbols } = await api.symbols();
  state.symbols = symbols;
  if (!state.symbol || !symbols.includes(state.symbol)) state.symbol = symbols[0] ?? null;
  renderSymbolOptions();
}

async function refreshOnce() {
  const which = state.window;
  const status = await api.status();
  state.serverStale = Boolean(status.stale);
  state.health = status.health ?? null;
  state.alertsNote = status.alerts && status.alerts.available === false
    ? { topic: status.alerts.topic ?? 'darkpool.alerts', note: status.alerts.note ?? '' } : null;
  if (status.last_update && (!state.lastUpdate || status.last_update > state.lastUpdate)) state.lastUpdate = status.last_update;
  if (status.window_period_ms) state.periodMs = status.window_period_ms;
  const range = state.range;
  const q = seriesQuery(status.current_window_end ?? status.latest_window_end);
  if (status.symbols !== state.symbols.length || (state.symbol === null && status.symbols > 0)) await loadSymbols();
  const symbol = state.symbol;
  const [all, other, market, symWindow, symMarket, series, alerts] = await Promise.all([
    api.window(which),
    optional(api.window(which === 'latest' ? 'current' : 'latest')), // the block table's other newest window
    api.market(which, RANKING_LIMIT),
    symbol ? api.window(which, symbol) : null,
    symbol ? optional(api.marketSymbol(symbol, which)) : null,
    symbol ? api.timeseries(symbol, q?.since, q?.step) : null,
    optional(api.alerts(ALERT_FETCH_LIMIT, state.alertsSince)),
  ]);
  for (const a of alerts?.rows ?? []) takeAlert(a);
  pruneAlerts(state.alerts, MAX_ALERTS);
  // selection changed meanwhile: the next refresh renders
  if (symbol !== state.symbol || which !== state.window || range !== state.range) return;

  const label = windowLabel(all.window_start, all.window_end);
  setText('window-label', label);
  setText('symbol-window', `${which === 'latest' ? 'latest complete' : 'current'} window ${label}`);
  setText('market-window', `${which === 'latest' ? 'latest complete' : 'current'} window ${label}`);

  const symRows = symWindow?.rows ?? [];
  renderSymbolHeadline(symMarket, symRows);
  renderMarketHeadline(all.rows);
  const perVenue = byVenue(symRows, state.venues);
  updateVenueCharts(charts, perVenue);
  describeVenueCharts(perVenue, label, all.window_start);
  if (series) {
    const overTime = liquidityOverTime(series, state.venues, TOP_VENUE_LINES);
    const sizeSeries = tradeSizeOverTime(series, state.venues);
    state.overTimeLabels = overTime.labels;
    updateTimeCharts(charts, overTime, sizeSeries);
    describeTimeCharts(overTime, sizeSeries, q);
    renderRangeNote(q, overTime.labels.length * overTime.series.length);
  }
  const sizes = darkLitTradeSize(symRows, state.venues);
  setText('trade-size-now', `this window: dark ${sizes.dark === null ? '—' : int(sizes.dark)} sh · lit ${
    sizes.lit === null ? '—' : int(sizes.lit)} sh`);
  updateRankingChart(charts, market.rows, state.symbol);
  renderRankingTable(market.rows);
  for (const r of [...all.rows, ...(other?.rows ?? [])]) keepLatest(state.panes, r);
  pruneToNewestWindows(state.panes, BLOCK_WINDOWS);
  renderBlocks();
  setExport('ranking', ['rank', 'symbol', 'dark_share', 'hhi', 'notional', 'venue_count', 'top_venue', 'window_start',
    'window_end', 'pane_timing', 'pane_index'], market.rows.map((r, i) => ({ rank: i + 1, ...r })),
  ['ranking', which, all.window_start]);
  describeChart('chart-ranking', `Dark share ranking, ${which} window ${label}: ${market.rows.slice(0, 5)
    .map((r) => `${r.symbol} ${pct(r.dark_share)}`).join(', ') || 'no symbols'}${market.rows.length > 5
    ? `, and ${market.rows.length - 5} more` : ''}.`);
  state.windowRows = all.rows;
  state.windowEnd = all.window_end;
  state.map?.update(venueMapPoints(state.registry, all.rows));
  renderAlerts();
  renderAlertMarks();
  document.body.dataset.renderedAt = new Date().toISOString();
  if (!document.body.dataset.firstChartMs && symRows.length) { // time to the first drawn charts (bench, tests)
    performance.mark('darkpool:first-chart');
    document.body.dataset.firstChartMs = String(Math.round(performance.now()));
  }
  document.body.dataset.symbol = state.symbol ?? '';
  renderFreshness();
}

/** Run a refresh; if one is running, run exactly one more after it. */
async function refresh() {
  if (state.refreshing) {
    state.again = true;
    return state.refreshing;
  }
  state.refreshing = (async () => {
    try {
      await refreshOnce();
    } catch (err) {
      console.warn(`refresh failed: ${err.message}`);
    } finally {
      state.refreshing = null;
    }
    if (state.again) {
      state.again = false;
      await refresh();
    }
  })();
  return state.refreshing;
}

const scheduleRefresh = throttle(refresh, RENDER_THROTTLE_MS);

/** The per-venue charts' text summaries and their CSV data. */
function describeVenueCharts(perVenue, label, windowStart) {
  const total = perVenue.reduce((a, v) => a + v.share_quantity, 0);
  const rows = perVenue.map((v) => ({ ...v, share_of_volume: total > 0 ? v.share_quantity / total : null }));
  setExport('venues', ['venue', 'name', 'venue_type', 'is_dark', 'notional', 'share_quantity', 'share_of_volume',
    'trade_count', 'block_count', 'block_quantity'], rows, ['venues', state.symbol, state.window, windowStart]);
  const top = (field, fmt) => rows.slice().sort((a, b) => b[field] - a[field]).slice(0, 3)
    .map((v) => `${v.venue}${v.is_dark ? ' (dark)' : ' (lit)'} ${fmt(v[field])}`).join(', ');
  const sym = state.symbol ?? '';
  const none = `no ${sym} prints in the window`;
  describeChart('chart-notional', rows.length ? `Notional by venue, ${sym}, window ${label}: ${rows.length} venues; largest ${
    top('notional', money)}.` : none);
  describeChart('chart-trades', rows.length ? `Trade count by venue, ${sym}, window ${label}: largest ${
    top('trade_count', int)}.` : none);
  describeChart('chart-share', rows.length ? `Venue share of volume, ${sym}, window ${label}: ${
    top('share_of_volume', (v) => pct(v))}.` : none);
}

/** The over-time charts' text summaries and their CSV data (one row per window shown). */
function describeTimeCharts(overTime, sizes, q) {
  const names = overTime.series.map((s) => s.venue);
  const rows = overTime.labels.map((start, i) => Object.fromEntries([['window_start', start],
    ...overTime.series.map((s) => [s.venue, s.data[i]])]));
  const span = [state.range, q?.since, q?.end];
  setExport('over-time', ['window_start', ...names], rows, ['over-time', state.symbol, ...span]);
  setExport('trade-size', ['window_start', 'dark_avg_trade_size', 'lit_avg_trade_size'], sizes.labels.map((start, i) => ({
    window_start: start, dark_avg_trade_size: sizes.dark[i], lit_avg_trade_size: sizes.lit[i] })),
  ['trade-size', state.symbol, ...span]);
  const range = timeRange(state.range).label;
  const totals = overTime.series.map((s) => `${s.venue} ${money(s.total)}`).slice(0, 4).join(', ');
  describeChart('chart-over-time', `Notional per window over ${range} for ${state.symbol}, ${overTime.labels.length
  } windows; largest venues over the range: ${totals || 'none'}.`);
  const last = (xs) => [...xs].reverse().find((v) => v !== null && v !== undefined) ?? null;
  describeChart('chart-trade-size', `Average trade size over ${range} for ${state.symbol}: latest dark ${
    last(sizes.dark) === null ? '—' : int(last(sizes.dark))} sh, lit ${last(sizes.lit) === null ? '—' : int(last(sizes.lit))} sh.`);
}

function selectSymbol(symbol) {
  if (!symbol || symbol === state.symbol) return;
  if (!state.symbols.includes(symbol)) { // an alert's symbol the selector does not list yet
    state.symbols = [...state.symbols, symbol].sort();
    renderSymbolOptions();
  }
  state.symbol = symbol;
  $('symbol-select').value = symbol;
  saveView();
  renderAlerts(); // the selected rows at once; the markers follow with the symbol's series
  refresh();
}

function onAlert(record) {
  if (!takeAlert(record)) return;
  pruneAlerts(state.alerts, MAX_ALERTS);
  renderAlerts();
  renderAlertMarks();
}

function onPane(kind, record) {
  state.liveCount += 1;
  if (record.emitted_at && (!state.lastUpdate || record.emitted_at > state.lastUpdate)) state.lastUpdate = record.emitted_at;
  if (kind === 'liquidity' && record.window_start && keepLatest(state.panes, record)
    && state.panes.size > BLOCK_WINDOWS * 2000) pruneToNewestWindows(state.panes, BLOCK_WINDOWS);
  if (record.symbol && !state.symbols.includes(record.symbol)) {
    state.symbols = [...state.symbols, record.symbol].sort();
    if (!state.symbol) state.symbol = record.symbol;
    renderSymbolOptions();
  }
  scheduleRefresh();
}

async function mountMap() {
  try {
    const { createVenueMap } = await import('./venue-map.jsx');
    state.map = createVenueMap($('venue-map'), {
      view: state.mapView,
      onView: (view) => {
        state.mapView = view;
        saveView();
      },
    });
    if (state.windowRows) state.map.update(venueMapPoints(state.registry, state.windowRows));
    renderAlertMarks();
  } catch (err) {
    console.error(`the venue map could not start: ${err.message}`);
    $('venue-map').textContent = `Map unavailable: ${err.message}`;
  }
}

/** Every element with data-def="<key>" explains itself on hover and keyboard focus (definitions.js). */
function setUpDefinitions() {
  const tip = $('def-tip');
  for (const el of document.querySelectorAll('[data-def]')) {
    const text = definition(el.dataset.def);
    el.setAttribute('aria-description', text);
    if (!el.matches('button, select, input, a, [tabindex]')) el.tabIndex = 0;
    el.classList.add('has-def');
  }
  const show = (e) => {
    const el = e.target.closest?.('[data-def]');
    if (!el) return;
    tip.textContent = definition(el.dataset.def);
    tip.dataset.def = el.dataset.def;
    const box = el.getBoundingClientRect();
    tip.style.left = `${Math.max(8, Math.min(box.left + window.scrollX, window.scrollX + window.innerWidth - 340))}px`;
    tip.style.top = `${box.bottom + window.scrollY + 6}px`;
    tip.hidden = false;
  };
  const hide = (e) => {
    if (e.target.closest?.('[data-def]')) tip.hidden = true;
  };
  document.addEventListener('mouseover', show);
  document.addEventListener('focusin', show);
  document.addEventListener('mouseout', hide);
  document.addEventListener('focusout', hide);
  document.addEventListener('keydown', (e) => {
    if (e.key === 'Escape') tip.hidden = true;
  });
}

/** The Export CSV buttons (data-export="<name>"): download what the table or chart shows. */
function setUpExports() {
  for (const button of document.querySelectorAll('[data-export]')) {
    button.addEventListener('click', () => {
      const data = state.exports[button.dataset.export];
      if (!data) return;
      downloadText(exportFileName(data.parts), toCsv(data.columns, data.rows));
    });
  }
}

/** The header's selectors, set from the URL's view; each change re-renders and writes the URL. */
function setUpControls() {
  const rangeSelect = $('range-select');
  rangeSelect.replaceChildren(...TIME_RANGES.map((r) => new Option(r.label, r.id, false, r.id === state.range)));
  $('window-select').value = state.window;
  $('blocks-sort').value = state.blockSort;
  $('symbol-select').addEventListener('change', (e) => selectSymbol(e.target.value));
  const onChange = (id, key, rerender) => $(id).addEventListener('change', (e) => {
    state[key] = e.target.value;
    saveView();
    rerender();
  });
  onChange('window-select', 'window', refresh);
  onChange('range-select', 'range', refresh);
  onChange('blocks-sort', 'blockSort', renderBlocks);
}

async function start() {
  charts = createCharts();
  setUpControls();
  setUpDefinitions();
  setUpExports();
  renderFreshness();
  renderSeverityLegend();
  const { venues } = await api.venues();
  state.registry = venues;
  state.venues = Object.fromEntries(venues.map((v) => [v.mpid, v]));
  await loadSymbols();
  saveView();
  await refresh();
  mountMap(); // after the first charts: the kepler.gl bundle loads only now
  new LiveStream('/api/v1/stream', {
    onPane,
    onAlert,
    onState: (s) => {
      state.stream = s;
      renderFreshness();
      if (s === 'live') scheduleRefresh(); // catch up on what was missed while disconnected
    },
  }).start();
  setInterval(renderFreshness, 1000);
  setInterval(scheduleRefresh, POLL_INTERVAL_MS);
}

start().catch((err) => {
  console.error(`dashboard failed to start: ${err.message}`);
  setText('stream-status', 'error');
  const banner = $('alert-banner');
  banner.textContent = `The dashboard could not load its data (${err.message}). Is darkpool serve running?`;
  banner.className = 'border-t px-5 py-2 text-center text-sm font-medium border-red-900 bg-red-950/80 text-red-200';
});
