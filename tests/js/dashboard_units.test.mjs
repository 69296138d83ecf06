// Unit tests of the dashboard's pure functions (node:test), run by tests/test_dashboard_units.py.
import assert from 'node:assert/strict';
import { test } from 'node:test';
import { BLOCK_MIN_NOTIONAL, BLOCK_MIN_SHARES, DEFINITIONS } from '../../dashboard/src/definitions.js';
import { csvField, exportFileName, toCsv } from '../../dashboard/src/export.js';
import { blockNotional, pruneToNewestWindows, rankBlocks } from '../../dashboard/src/metrics.js';
import { rangeQuery, rangeStep, sessionOpenBefore, timeRange } from '../../dashboard/src/ranges.js';
import { VIEW_DEFAULTS, parseMapView, readView, writeView } from '../../dashboard/src/view.js';

const W1 = '2026-12-02T14:30:00.000Z';
const W2 = '2026-12-02T14:31:00.000Z';
const end = (ws) => new Date(Date.parse(ws) + 300_000).toISOString();

function pane(symbol, venue, ws, shares, blocks = 0, blockQty = 0, vwap = 100, emitted = 0) {
  return { symbol, venue, window_start: ws, window_end: end(ws), share_quantity: shares, block_count: blocks,
    block_quantity: blockQty, vwap, pane_timing: 'EARLY', pane_index: 0,
    emitted_at: new Date(Date.parse(ws) + 60_000 + emitted).toISOString() };
}

/** A burst as an early firing sends it: 40 symbols, each on 3 venues, in symbol order, the last ones smallest. */
function burst(ws) {
  const out = [];
  for (let i = 0; i < 40; i += 1) {
    const symbol = `S${String(i).padStart(2, '0')}`;
    const size = (40 - i) * 10_000; // S00's blocks are the largest, S39's the smallest (and sent last)
    out.push(pane(symbol, 'UBSA', ws, size * 4, 2, size, 50, i * 3));
    out.push(pane(symbol, 'XNAS', ws, size * 4, 0, 0, 50, i * 3 + 1));
    out.push(pane(symbol, 'JPMX', ws, size * 2, 1, size / 2, 50, i * 3 + 2));
  }
  return out;
}

test('block ranking: the largest block quantity first, whatever order the burst came in', () => {
  const rows = rankBlocks(burst(W1), { limit: 12 });
  assert.equal(rows.length, 12);
  // UBSA's blocks of S00..S11 (400,000 down to 290,000 shares), though S39's came last in the burst
  assert.deepEqual(rows.map((r) => `${r.symbol}|${r.venue}`),
    Array.from({ length: 12 }, (_, i) => `S${String(i).padStart(2, '0')}|UBSA`));
  for (let i = 1; i < rows.length; i += 1) assert.ok(rows[i - 1].block_quantity >= rows[i].block_quantity);
  // block share of the symbol's volume in the window: 400,000 of S00's 4,000,000 shares
  assert.equal(rows[0].block_share, 400_000 / 4_000_000);
  assert.equal(rows[0].block_notional, 400_000 * 50);
  // the same ranking however the burst is ordered
  const reversed = rankBlocks(burst(W1).reverse(), { limit: 12 });
  assert.deepEqual(reversed.map((r) => `${r.symbol}|${r.venue}`), rows.map((r) => `${r.symbol}|${r.venue}`));
});

test('block ranking: the newest window first, ties by symbol then venue, by notional on request', () => {
  const older = [pane('ZZZ', 'UBSA', W1, 1e6, 5, 900_000)];
  const newer = [pane('BBB', 'UBSA', W2, 100_000, 1, 20_000, 10), pane('AAA', 'JPMX', W2, 100_000, 1, 20_000, 10),
    pane('AAA', 'UBSA', W2, 100_000, 1, 20_000, 10), pane('CCC', 'MSPL', W2, 100_000, 1, 15_000, 100)];
  const rows = rankBlocks([...older, ...newer], { windows: 2 });
  assert.deepEqual(rows.map((r) => `${r.symbol}|${r.venue}`), ['AAA|JPMX', 'AAA|UBSA', 'BBB|UBSA', 'CCC|MSPL', 'ZZZ|UBSA']);
  assert.deepEqual(rankBlocks([...older, ...newer], { windows: 1 }).map((r) => r.window_start), [W2, W2, W2, W2]);
  const byNotional = rankBlocks(newer, { by: 'notional' });
  assert.equal(byNotional[0].symbol, 'CCC'); // 15,000 × $100 beats 20,000 × $10
  assert.equal(rows.find((r) => r.symbol === 'AAA' && r.venue === 'UBSA').block_share, 20_000 / 200_000);
  assert.equal(blockNotional({ block_quantity: 5, vwap: null }), null);
});

test('pruning keeps the newest windows only', () => {
  const store = new Map([...burst(W1), ...burst(W2)].map((r) => [`${r.symbol}|${r.venue}|${r.window_start}`, r]));
  pruneToNewestWindows(store, 1);
  assert.equal(store.size, 120);
  assert.ok([...store.values()].every((r) => r.window_start === W2));
});

test('range step: at most the point budget, a whole multiple of the period, the smallest such', () => {
  const minute = 60_000;
  assert.equal(rangeStep(15 * minute, minute, 7, 2000), minute);
  assert.equal(rangeStep(60 * minute, minute, 7, 2000), minute);
  assert.equal(rangeStep(360 * minute, minute, 7, 2000), 2 * minute); // 360 × 7 = 2,520 > 2,000
  assert.equal(rangeStep(1440 * minute, minute, 7, 2000), 10 * minute); // 1,440 / 5 × 7 = 2,016 > 2,000
  for (const span of [15, 60, 360, 1440, 390]) {
    for (const period of [minute, 30_000, 5 * minute]) {
      const step = rangeStep(span * minute, period, 7, 2000);
      assert.equal(step % period, 0);
      assert.ok(Math.ceil((span * minute) / step) * 7 <= 2000, `${span} min at ${period} ms`);
    }
  }
});

test('session open: 09:30 New York, winter and summer time, the day before when before the open', () => {
  assert.equal(sessionOpenBefore(Date.parse('2026-12-02T20:00:00Z')), Date.parse('2026-12-02T14:30:00Z'));
  assert.equal(sessionOpenBefore(Date.parse('2026-07-01T15:00:00Z')), Date.parse('2026-07-01T13:30:00Z'));
  assert.equal(sessionOpenBefore(Date.parse('2026-12-02T14:29:00Z')), Date.parse('2026-12-01T14:30:00Z'));
  assert.equal(sessionOpenBefore(Date.parse('2026-12-02T14:30:00Z')), Date.parse('2026-12-02T14:30:00Z'));
  const q = rangeQuery('session', Date.parse('2026-12-02T20:00:00Z'), 60_000, 7, 2000);
  assert.equal(q.sinceMs, Date.parse('2026-12-02T14:30:00Z'));
  assert.equal(q.stepMs, 60_000 * 2); // 330 windows × 7 lines > 2,000
  assert.equal(rangeQuery('24h', 1e12, 60_000, 7, 2000).spanMs, 24 * 3_600_000);
  assert.equal(timeRange('nonsense').id, '1h');
});

test('the view round-trips through the query string; bad values fall back to the defaults', () => {
  const view = { symbol: 'BRK.B', window: 'current', range: '6h', blocks: 'notional',
    map: { latitude: 40.7776, longitude: -74.0724, zoom: 9.5 } };
  const text = writeView(view);
  assert.equal(text, '?symbol=BRK.B&window=current&range=6h&blocks=notional&map=40.7776,-74.0724,9.50');
  assert.deepEqual(readView(text), view);
  assert.equal(writeView({ ...VIEW_DEFAULTS, symbol: 'AAPL' }), '?symbol=AAPL');
  assert.deepEqual(readView('?window=old&range=2d&blocks=x&map=1,2'), VIEW_DEFAULTS);
  assert.equal(parseMapView('91,0,5'), null);
  assert.equal(parseMapView('40,-74,23'), null);
});

test('CSV: RFC 4180 quoting, a header, CRLF; file names from the window and range', () => {
  assert.equal(csvField('a,b'), '"a,b"');
  assert.equal(csvField('say "hi"'), '"say ""hi"""');
  assert.equal(csvField(null), '');
  assert.equal(toCsv(['x', 'y'], [{ x: 1, y: 'Other (3)' }, { x: 2.5 }]), 'x,y\r\n1,Other (3)\r\n2.5,\r\n');
  assert.equal(exportFileName(['over-time', 'AAPL', '1h', '2026-12-02T13:30:00.000Z', '2026-12-02T14:35:00.000Z']),
    'darkpool_over-time_AAPL_1h_2026-12-02T1330Z_2026-12-02T1435Z.csv');
  assert.equal(exportFileName(['blocks', null, 'by-quantity']), 'darkpool_blocks_by-quantity.csv');
});

test('every definition is short text; the block limits are stated', () => {
  for (const [key, text] of Object.entries(DEFINITIONS)) assert.ok(text.length > 20 && text.length < 400, key);
  assert.ok(DEFINITIONS.block.includes('10,000 shares') && DEFINITIONS.block.includes('$200,000'));
  assert.ok(DEFINITIONS.hhi.includes('10,000'));
  assert.ok(DEFINITIONS.dark.includes('ATS + SDP'));
  assert.ok(['EARLY', 'ON_TIME', 'LATE'].every((t) => DEFINITIONS.pane.includes(t)));
  assert.equal(BLOCK_MIN_SHARES, 10000);
  assert.equal(BLOCK_MIN_NOTIONAL, 200000);
});
