// Server-Sent Events over fetch (EventSource cannot send the Authorization header).

export interface SseMessage {
  id?: string;
  event?: string;
  data: string;
}

/** Reads `res`'s body as SSE and calls `onMessage` per event; resolves at the end of the body. */
export async function readSse(res: Response, onMessage: (m: SseMessage) => void, signal?: AbortSignal): Promise<void> {
  if (!res.body) return;
  const reader = res.body.pipeThrough(new TextDecoderStream()).getReader();
  let buffer = '';
  let current: SseMessage = { data: '' };
  let hasData = false;
  const abort = () => void reader.cancel().catch(() => undefined);
  signal?.addEventListener('abort', abort);
  try {
    for (;;) {
      const { value, done } = await reader.read();
      if (done) break;
      buffer += value;
      let nl: number;
      while ((nl = buffer.search(/\r?\n/)) >= 0) {
        const line = buffer.slice(0, nl);
        buffer = buffer.slice(buffer[nl] === '\r' ? nl + 2 : nl + 1);
        if (line === '') {
          if (hasData) onMessage(current);
          current = { data: '' };
          hasData = false;
        } else if (line.startsWith(':')) {
          // keep-alive comment
        } else {
          const colon = line.indexOf(':');
          const field = colon < 0 ? line : line.slice(0, colon);
          let val = colon < 0 ? '' : line.slice(colon + 1);
          if (val.startsWith(' ')) val = val.slice(1);
          if (field === 'data') {
            current.data = hasData ? `${current.data}\n${val}` : val;
            hasData = true;
          } else if (field === 'event') current.event = val;
          else if (field === 'id') current.id = val;
        }
      }
    }
    if (hasData) onMessage(current);
  } finally {
    signal?.removeEventListener('abort', abort);
  }
}
