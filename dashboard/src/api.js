// Thin client of the serving API (/api/v1, see /api/v1/openapi.json).

export class ApiError extends Error {
  constructor(status, message, path) {
    super(`${path}: ${status} ${message}`);
    this.status = status;
    this.path = path;
  }
}

/** GET a JSON document; query parameters with null/undefined/'' values are left out. */
export async function getJSON(path, params = {}) {
  const query = new URLSearchParams();
  for (const [k, v] of Object.entries(params)) if (v !== null && v !== undefined && v !== '') query.set(k, v);
  const url = query.size ? `${path}?${query}` : path;
  const response = await fetch(url, { headers: { Accept: 'application/json' }, cache: 'no-store' });
  if (!response.ok) {
    let message = response.statusText;
    try {
      message = (await response.json())?.error?.message ?? message;
    } catch {
      // not JSON: keep the status text
    }
    throw new ApiError(response.status, message, path);
  }
  return response.json();
}

const enc = encodeURIComponent;

export const api = {
  status: () => getJSON('/api/v1/status'),
  symbols: () => getJSON('/api/v1/symbols'),
  venues: () => getJSON('/api/v1/venues'),
  /** which: 'latest' (newest complete window) or 'current' (still updating) */
  window: (which, symbol) => getJSON(`/api/v1/windows/${which}`, { symbol }),
  market: (which, limit) => getJSON('/api/v1/market', { window: which, sort: 'dark_share', order: 'desc', limit }),
  marketSymbol: (symbol, which) => getJSON(`/api/v1/market/${enc(symbol)}`, { window: which }),
  /** since: windows starting at/after it; step: only windows whose start is a multiple of it (s) */
  timeseries: (symbol, since, step) => getJSON(`/api/v1/symbols/${enc(symbol)}/timeseries`, { since, step }),
  /** the live alerts, newest first; since: emitted_at at/after it (what is new or raised since) */
  alerts: (limit, since) => getJSON('/api/v1/alerts', { limit, since }),
};
