// Runs the dashboard's market definitions (dashboard/src/metrics.js) on the cases of
// tests/test_market_rules.py: reads {cases: {name: [liquidity rows]}, venue_types: [...]}
// as JSON on stdin and prints {cases: {name: figures}, dark: [bool per venue type]} as JSON.
import { readFileSync } from 'node:fs';
import { isDark, summarize } from '../dashboard/src/metrics.js';

const input = JSON.parse(readFileSync(0, 'utf8'));
const cases = {};
for (const [name, rows] of Object.entries(input.cases)) {
  const s = summarize(rows, {});
  cases[name] = {
    vwap: s.vwap, avg_trade_size: s.avg_trade_size, dark_share: s.dark_share, hhi: s.hhi,
    top_venue: s.top_venue, top_venue_share: s.top_venue_share, venue_count: s.venue_count,
  };
}
const dark = input.venue_types.map((t) => isDark({ venue: '?', venue_type: t }, {}));
process.stdout.write(JSON.stringify({ cases, dark }));
