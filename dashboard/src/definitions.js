// What each figure on the page means: the one place the page's explanations come from (shown on
// hover and keyboard focus of every element with data-def="<key>"). The limits are darkpool's
// (darkpool/contracts.py, docs/market-rules.md); tests/test_dashboard_units.py checks they agree.
import { DARK_TYPES, HHI_SCALE } from './metrics.js';

export const BLOCK_MIN_SHARES = 10000;
export const BLOCK_MIN_NOTIONAL = 200000;

const darkTypes = [...DARK_TYPES].join(' + ');
const blockRule = `a print of at least ${BLOCK_MIN_SHARES.toLocaleString('en-US')} shares or at least $${
  BLOCK_MIN_NOTIONAL.toLocaleString('en-US')} of notional`;

export const DEFINITIONS = {
  dark: `Dark = off-exchange venues: ${darkTypes} (alternative trading systems and single-dealer platforms). Lit = exchanges.`,
  dark_share: `Dark share = shares traded on dark venues (${darkTypes}) ÷ all shares traded, in the window.`,
  hhi: `HHI (Herfindahl–Hirschman index) of venue share of volume: the sum over venues of (100 × the venue's share)², from near 0 (spread over many venues) to ${HHI_SCALE.toLocaleString('en-US')} (one venue).`,
  vwap: 'VWAP = notional ÷ shares: the volume-weighted average price in the window.',
  notional: 'Notional = the sum of price × shares of the prints in the window, in dollars.',
  block: `Block = ${blockRule}. Block prints counts them; block shares adds up their shares.`,
  block_share: 'Block share of volume = the venue\u2019s block shares ÷ all of the symbol\u2019s shares in that window (every venue).',
  block_notional: 'Block notional ≈ block shares × the pane\u2019s VWAP (an estimate: the record holds block shares, not their prices).',
  trades: 'Trades = prints in the window.',
  venues: 'Venues = venues that printed the symbol in the window.',
  top_venue: 'Top venue = the venue with the most shares in the window, and its share of volume.',
  avg_trade_size: 'Average trade size = shares ÷ trades.',
  window: 'Windows are 5-minute event-time windows sliding every minute. Latest complete = the newest window the watermark has passed; current = still updating.',
  pane: 'Pane = one firing of a window: EARLY while the window is still open (partial figures, sent again as prints arrive), ON_TIME once the watermark passes its end (the complete figures), LATE when late prints arrive after that (a correction). #n counts the firings.',
  range: 'Time range of the over-time charts: one point per window; a long range shows every k-th window so a chart draws at most a few thousand points (the step is in the subtitle).',
  freshness: 'Freshness = how long ago the newest pane was emitted.',
};

/** The explanation of `key` ('' when there is none). */
export function definition(key) {
  return DEFINITIONS[key] ?? '';
}
