// The tenant's live events over `/ws/events` (subprotocols `getlood.v1, bearer.<jwt>`), resumed
// with `after=<cursor>` when the socket drops, so a reconnect loses nothing.
import { token, wsBase } from './client';
import type { EventJson } from './types';

export interface EventSocketOptions {
  topics: string[];
  entityId?: string;
  onEvent: (e: EventJson, cursor: string) => void;
  onStatus?: (s: 'connecting' | 'open' | 'closed') => void;
  /** Called after a `resync` (the server says events were missed): reload the state. */
  onResync?: () => void;
}

/** Opens the socket and keeps it open until the returned function is called. */
export function subscribeEvents(opts: EventSocketOptions): () => void {
  let stopped = false;
  let socket: WebSocket | null = null;
  let cursor = '';
  let retry = 0;
  let timer: ReturnType<typeof setTimeout> | undefined;

  const connect = () => {
    const jwt = token();
    if (stopped || !jwt) return;
    const q = new URLSearchParams({ topics: opts.topics.join(',') });
    if (opts.entityId) q.set('entity_id', opts.entityId);
    if (cursor) q.set('after', cursor);
    opts.onStatus?.('connecting');
    const ws = new WebSocket(`${wsBase()}/ws/events?${q}`, ['getlood.v1', `bearer.${jwt}`]);
    socket = ws;
    ws.onopen = () => {
      retry = 0;
      opts.onStatus?.('open');
    };
    ws.onmessage = (m) => {
      let frame: { type?: string; cursor?: string; event?: EventJson };
      try {
        frame = JSON.parse(String(m.data));
      } catch {
        return;
      }
      if (frame.type === 'event' && frame.event) {
        if (frame.cursor) cursor = frame.cursor;
        opts.onEvent(frame.event, frame.cursor ?? '');
      } else if (frame.type === 'resync') {
        if (frame.cursor) cursor = frame.cursor;
        opts.onResync?.();
      }
    };
    ws.onclose = () => {
      socket = null;
      opts.onStatus?.('closed');
      if (stopped) return;
      const delay = Math.min(10_000, 500 * 2 ** retry++);
      timer = setTimeout(connect, delay);
    };
  };
  connect();
  return () => {
    stopped = true;
    clearTimeout(timer);
    socket?.close(1000);
  };
}
