// Market-structure figures computed in the browser from API records (pure functions).
//
// The definitions are darkpool.market's (docs/market-rules.md): dark = ATS + SDP
// venues; VWAP = notional / shares; average trade size = shares / trades; dark
// share = dark shares / shares; HHI = sum over venues of (100 * venue share of
// volume)^2, 0..10,000; top venue = most shares, a tie to the first MPID in plain
// string order; venue count = venues with shares. Every ratio is null when
// nothing traded. tests/test_market_rules.py runs this module with node on the
// same cases as the Python and SQL implementations and requires equal results.

export const DARK_TYPES = new Set(['ATS', 'SDP']);
export const HHI_SCALE = 10000;

/** numerator / denominator, or null unless the denominator is positive (nothing traded). */
export function ratio(numerator, denominator) {
  return denominator > 0 ? numerator / denominator : null;
}

/** Plain string order (UTF-16 code units, as Python and DuckDB order MPIDs), not the locale's. */
export function compareMpid(a, b) {
  if (a < b) return -1;
  return a > b ? 1 : 0;
}

/** Venues by share quantity, largest first; equal quantities in MPID order (the top venue rule). */
export function byVolumeOrder(a, b) {
  return b.share_quantity - a.share_quantity || compareMpid(a.venue, b.venue);
}

/** True when a liquidity record (or registry venue) is off-exchange. */
export function isDark(record, venues = {}) {
  const registry = venues[record.venue ?? record.mpid];
  if (registry && typeof registry.is_dark === 'boolean') return registry.is_dark;
  return DARK_TYPES.has(record.venue_type);
}

/** Herfindahl–Hirschman index of a list of volumes: up to 10,000 (one venue); null when they add up to nothing. */
export function hhi(volumes) {
  const total = volumes.reduce((a, v) => a + v, 0);
  if (total <= 0) return null;
  return HHI_SCALE * volumes.reduce((a, v) => a + (v / total) ** 2, 0);
}

/** The venue with the most shares of [{venue, share_quantity}] and its share: {venue: null, share: null} when none. */
export function topVenue(perVenue) {
  const total = perVenue.reduce((a, v) => a + v.share_quantity, 0);
  if (total <= 0) return { venue: null, share: null };
  const top = [...perVenue].sort(byVolumeOrder)[0];
  return { venue: top.venue, share: top.share_quantity / total };
}

/** Sum liquidity rows per venue: [{venue, is_dark, notional, share_quantity, trade_count, block_count, ...}], by notional desc. */
export function byVenue(rows, venues = {}) {
  const acc = new Map();
  for (const r of rows) {
    const a = acc.get(r.venue) ?? {
      venue: r.venue, name: venues[r.venue]?.name ?? r.venue, venue_type: r.venue_type,
      is_dark: isDark(r, venues), notional: 0, share_quantity: 0, trade_count: 0, block_count: 0, block_quantity: 0,
    };
    a.notional += Number(r.notional) || 0;
    a.share_quantity += Number(r.share_quantity) || 0;
    a.trade_count += Number(r.trade_count) || 0;
    a.block_count += Number(r.block_count) || 0;
    a.block_quantity += Number(r.block_quantity) || 0;
    acc.set(r.venue, a);
  }
  return [...acc.values()].sort((x, y) => y.notional - x.notional || compareMpid(x.venue, y.venue));
}

/**
 * Headline figures of a set of liquidity rows (one symbol, or the whole market):
 * totals, dark share, venue HHI, VWAP (only meaningful for one symbol), block prints.
 */
export function summarize(rows, venues = {}) {
  const perVenue = byVenue(rows, venues);
  let qty = 0; let darkQty = 0; let notional = 0; let trades = 0; let blocks = 0;
  for (const v of perVenue) {
    qty += v.share_quantity;
    notional += v.notional;
    trades += v.trade_count;
    blocks += v.block_count;
    if (v.is_dark) darkQty += v.share_quantity;
  }
  const symbols = new Set(rows.map((r) => r.symbol));
  const top = topVenue(perVenue);
  return {
    share_quantity: qty,
    dark_quantity: darkQty,
    dark_share: ratio(darkQty, qty),
    notional,
    vwap: symbols.size === 1 ? ratio(notional, qty) : null,
    trade_count: trades,
    block_count: blocks,
    hhi: hhi(perVenue.map((v) => v.share_quantity)),
    venue_count: perVenue.filter((v) => v.share_quantity > 0).length,
    top_venue: top.venue,
    top_venue_share: top.share,
    symbol_count: symbols.size,
    avg_trade_size: ratio(qty, trades),
  };
}

/** Average trade size (shares per trade) on dark vs lit venues. */
export function darkLitTradeSize(rows, venues = {}) {
  const sums = { dark: [0, 0], lit: [0, 0] };
  for (const r of rows) {
    const side = isDark(r, venues) ? 'dark' : 'lit';
    sums[side][0] += Number(r.share_quantity) || 0;
    sums[side][1] += Number(r.trade_count) || 0;
  }
  return { dark: ratio(...sums.dark), lit: ratio(...sums.lit) };
}

/** Sorted window starts present in a timeseries response ({venues: {MPID: [points]}}). */
export function windowStarts(timeseries) {
  const starts = new Set();
  for (const points of Object.values(timeseries?.venues ?? {})) for (const p of points) starts.add(p.window_start);
  return [...starts].sort();
}

/**
 * Notional per window for the `top` venues with the most notional over the period,
 * the others summed as "Other": {labels: [window_start], series: [{venue, is_dark, data}]}.
 */
export function liquidityOverTime(timeseries, venues = {}, top = 6) {
  const labels = windowStarts(timeseries);
  const index = new Map(labels.map((s, i) => [s, i]));
  const perVenue = Object.entries(timeseries?.venues ?? {}).map(([venue, points]) => {
    const data = new Array(labels.length).fill(0);
    for (const p of points) data[index.get(p.window_start)] = Number(p.notional) || 0;
    return { venue, is_dark: isDark({ venue }, venues), data, total: data.reduce((a, v) => a + v, 0) };
  });
  perVenue.sort((a, b) => b.total - a.total || compareMpid(a.venue, b.venue));
  const series = perVenue.slice(0, top);
  const rest = perVenue.slice(top);
  if (rest.length) {
    const data = labels.map((_, i) => rest.reduce((a, s) => a + s.data[i], 0));
    series.push({ venue: `Other (${rest.length})`, is_dark: null, data, total: data.reduce((a, v) => a + v, 0) });
  }
  return { labels, series };
}

/** Average trade size per window, dark venues vs lit venues: {labels, dark: [], lit: []}. */
export function tradeSizeOverTime(timeseries, venues = {}) {
  const labels = windowStarts(timeseries);
  const index = new Map(labels.map((s, i) => [s, i]));
  const q = { dark: labels.map(() => 0), lit: labels.map(() => 0) };
  const n = { dark: labels.map(() => 0), lit: labels.map(() => 0) };
  for (const [venue, points] of Object.entries(timeseries?.venues ?? {})) {
    const side = isDark({ venue }, venues) ? 'dark' : 'lit';
    for (const p of points) {
      const i = index.get(p.window_start);
      q[side][i] += Number(p.share_quantity) || 0;
      n[side][i] += Number(p.trade_count) || 0;
    }
  }
  const avg = (side) => labels.map((_, i) => ratio(q[side][i], n[side][i]));
  return { labels, dark: avg('dark'), lit: avg('lit') };
}

/** Every registry venue with the notional and trades it printed in `rows` (0 when none): the map's points. */
export function venueMapPoints(registry, rows) {
  const totals = new Map(byVenue(rows).map((v) => [v.venue, v]));
  return registry.map((v) => ({
    mpid: v.mpid, name: v.name, venue_type: v.venue_type, data_center: v.data_center,
    latitude: v.latitude, longitude: v.longitude, is_dark: v.is_dark,
    notional: totals.get(v.mpid)?.notional ?? 0,
    trade_count: totals.get(v.mpid)?.trade_count ?? 0,
  }));
}

/** Key of a liquidity pane (the latest pane per key wins), as in darkpool.contracts.liquidity_key. */
export function paneKey(r) {
  return `${r.symbol}|${r.venue}|${r.window_start}`;
}

/** Keep the newest pane per key in `store` (a Map); returns true when `record` was newer. */
export function keepLatest(store, record) {
  const key = paneKey(record);
  const old = store.get(key);
  if (old && (old.pane_index ?? 0) > (record.pane_index ?? 0)) return false;
  store.set(key, record);
  return true;
}

/** What the block table ranks by: block shares, or their notional (estimated: block shares × the pane's VWAP). */
export const BLOCK_MEASURES = {
  quantity: { label: 'block shares', value: (r) => Number(r.block_quantity) || 0 },
  notional: { label: 'block notional (≈ block shares × VWAP)', value: (r) => blockNotional(r) ?? 0 },
};

/** A pane's block notional, estimated as block shares × the pane's VWAP (the record has no block notional); null without a VWAP. */
export function blockNotional(r) {
  const vwap = Number(r.vwap);
  return Number.isFinite(vwap) && r.vwap !== null ? (Number(r.block_quantity) || 0) * vwap : null;
}

/** The newest `count` window starts among `panes`, newest first. */
export function newestWindowStarts(panes, count) {
  return [...new Set([...panes].map((r) => r.window_start))].sort().reverse().slice(0, count);
}

/**
 * Block activity across all symbols: the panes with block prints in the newest `windows` windows, the
 * newest window first, then by `by` (BLOCK_MEASURES: 'quantity' or 'notional') largest first, ties by
 * symbol then venue. `panes` are liquidity panes (the latest per key), with or without blocks: each row
 * gets `block_share`, its block shares over the symbol's shares in that window (all venues held), and
 * `block_notional` (estimated, blockNotional).
 */
export function rankBlocks(panes, { by = 'quantity', limit = 12, windows = 1 } = {}) {
  const all = [...panes];
  const starts = new Set(newestWindowStarts(all, windows));
  const volume = new Map();
  for (const r of all) {
    if (!starts.has(r.window_start)) continue;
    const key = `${r.symbol}|${r.window_start}`;
    volume.set(key, (volume.get(key) ?? 0) + (Number(r.share_quantity) || 0));
  }
  const measure = (BLOCK_MEASURES[by] ?? BLOCK_MEASURES.quantity).value;
  return all
    .filter((r) => starts.has(r.window_start) && Number(r.block_count) > 0)
    .map((r) => ({
      ...r,
      block_notional: blockNotional(r),
      block_share: ratio(Number(r.block_quantity) || 0, volume.get(`${r.symbol}|${r.window_start}`) ?? 0),
    }))
    .sort((a, b) => compareMpid(b.window_start ?? '', a.window_start ?? '')
      || measure(b) - measure(a) || compareMpid(a.symbol, b.symbol) || compareMpid(a.venue, b.venue))
    .slice(0, limit);
}

/** Keep only the panes of the newest `count` windows in `store` (a Map of paneKey -> pane). */
export function pruneToNewestWindows(store, count) {
  const keep = new Set(newestWindowStarts(store.values(), count));
  for (const [key, r] of store) if (!keep.has(r.window_start)) store.delete(key);
}

/** Seconds between an ISO time and `nowMs` (null if no time). */
export function ageSeconds(iso, nowMs = Date.now()) {
  if (!iso) return null;
  const t = Date.parse(iso);
  return Number.isNaN(t) ? null : (nowMs - t) / 1000;
}
