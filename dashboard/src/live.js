// The live push channel: an EventSource on /api/v1/stream with a visible state.
//
// States: 'connecting' (first attempt), 'live' (open), 'disconnected' (an error:
// the browser retries by itself, and when it gives up we reconnect with backoff).

import { RECONNECT_MAX_MS, RECONNECT_MIN_MS } from './config.js';

export class LiveStream {
  /**
   * @param {string} url the SSE endpoint
   * @param {{onPane: (kind: string, record: object) => void, onState: (state: string) => void,
   *          onAlert?: (record: object) => void, onHeartbeat?: (data: object) => void}} handlers
   */
  constructor(url, handlers) {
    this.url = url;
    this.handlers = handlers;
    this.source = null;
    this.state = 'connecting';
    this.backoff = RECONNECT_MIN_MS;
    this.timer = null;
  }

  start() {
    this.connect();
    return this;
  }

  setState(state) {
    if (state === this.state) return;
    this.state = state;
    this.handlers.onState(state);
  }

  connect() {
    clearTimeout(this.timer);
    const source = new EventSource(this.url);
    this.source = source;
    source.onopen = () => {
      this.backoff = RECONNECT_MIN_MS;
      this.setState('live');
    };
    source.onerror = () => {
      this.setState('disconnected');
      if (source.readyState === EventSource.CLOSED) this.scheduleReconnect();
    };
    for (const kind of ['liquidity', 'market']) {
      source.addEventListener(kind, (event) => this.dispatch(kind, event.data));
    }
    source.addEventListener('alert', (event) => {
      const record = safeParse(event.data);
      if (record) {
        this.setState('live');
        this.handlers.onAlert?.(record);
      }
    });
    source.addEventListener('heartbeat', (event) => {
      this.setState('live');
      this.handlers.onHeartbeat?.(safeParse(event.data));
    });
  }

  dispatch(kind, data) {
    const record = safeParse(data);
    if (record) {
      this.setState('live');
      this.handlers.onPane(kind, record);
    }
  }

  scheduleReconnect() {
    this.source?.close();
    const delay = this.backoff;
    this.backoff = Math.min(this.backoff * 2, RECONNECT_MAX_MS);
    this.timer = setTimeout(() => this.connect(), delay);
  }
}

function safeParse(text) {
  try {
    return JSON.parse(text);
  } catch {
    console.warn('stream: ignoring an event that is not JSON');
    return null;
  }
}

/** Call `fn` at most once per `ms`; calls in between collapse into one trailing call. */
export function throttle(fn, ms) {
  let last = 0;
  let timer = null;
  return () => {
    const wait = last + ms - Date.now();
    if (wait <= 0 && !timer) {
      last = Date.now();
      fn();
    } else if (!timer) {
      timer = setTimeout(() => {
        timer = null;
        last = Date.now();
        fn();
      }, Math.max(wait, 0));
    }
  };
}
