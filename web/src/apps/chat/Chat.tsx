import { useEffect, useRef, useState, type FormEvent, type KeyboardEvent } from 'react';
import { useAtom } from 'jotai';
import { api, describe, raw } from '../../api/client';
import { readSse } from '../../api/sse';
import type { ChatExtras, UiAction } from '../../api/types';
import type { components } from '../../../../docs/api/schema';
import { useBridge } from '../../desktop/context';
import { appFor, type AppProps } from '../../desktop/apps';
import { chatMessagesAtom, conversationIdAtom, type ChatMessage } from './state';

type ModelList = components['schemas']['ModelList'];

interface Chunk {
  choices?: { delta?: { content?: string } }[];
  getlood?: ChatExtras;
  error?: { message?: string; code?: string };
}

function pct(c: number): string {
  return `${Math.round(c * 100)}%`;
}

export default function Chat({ window: win }: AppProps) {
  const bridge = useBridge();
  const [messages, setMessages] = useAtom(chatMessagesAtom);
  const [conversationId, setConversationId] = useAtom(conversationIdAtom);
  const [input, setInput] = useState('');
  const [busy, setBusy] = useState(false);
  // `getlood`: the pipeline picks the agent; or one of the tenant's agents by name.
  const [model, setModel] = useState('getlood');
  const [models, setModels] = useState<string[]>(['getlood']);
  const abort = useRef<AbortController | null>(null);
  const log = useRef<HTMLOListElement>(null);

  useEffect(() => {
    if (log.current) log.current.scrollTop = log.current.scrollHeight;
  }, [messages]);
  useEffect(() => () => abort.current?.abort(), []);
  useEffect(() => {
    api<ModelList>('/v1/models')
      .then((l) => setModels(l.data.map((m) => m.id)))
      .catch(() => undefined);
  }, []);

  const update = (id: string, f: (m: ChatMessage) => ChatMessage) => setMessages((ms) => ms.map((m) => (m.id === id ? f(m) : m)));

  const send = async (text: string) => {
    const content = text.trim();
    if (!content || busy) return;
    const user: ChatMessage = { id: crypto.randomUUID(), role: 'user', content };
    const answer: ChatMessage = { id: crypto.randomUUID(), role: 'assistant', content: '', streaming: true };
    const history = [...messages, user].filter((m) => !m.error).map((m) => ({ role: m.role, content: m.content }));
    setMessages((ms) => [...ms, user, answer]);
    setInput('');
    setBusy(true);
    const ctl = new AbortController();
    abort.current = ctl;
    try {
      const res = await raw('/v1/chat/completions', {
        body: { model, stream: true, messages: history.slice(-20), desktop_id: win.desktop_id, conversation_id: conversationId ?? undefined },
        headers: { accept: 'text/event-stream' },
        signal: ctl.signal,
      });
      await readSse(
        res,
        (m) => {
          if (m.data === '[DONE]') return;
          let chunk: Chunk;
          try {
            chunk = JSON.parse(m.data);
          } catch {
            return;
          }
          if (chunk.error) {
            update(answer.id, (a) => ({ ...a, error: chunk.error?.message ?? 'the answer failed' }));
            return;
          }
          const delta = chunk.choices?.[0]?.delta?.content ?? '';
          const extras = chunk.getlood;
          if (extras?.conversation_id) setConversationId(extras.conversation_id);
          update(answer.id, (a) => ({ ...a, content: a.content + delta, extras: extras ?? a.extras }));
        },
        ctl.signal,
      );
    } catch (e) {
      if (!ctl.signal.aborted) update(answer.id, (a) => ({ ...a, error: describe(e) }));
    } finally {
      update(answer.id, (a) => ({ ...a, streaming: false }));
      setBusy(false);
    }
  };

  const runAction = (a: UiAction) => {
    const params = (a.params ?? {}) as { app_id?: string; title?: string; props?: Record<string, unknown> };
    if (a.type === 'open_window' && params.app_id) {
      const app = appFor(params.app_id);
      void bridge.open(params.app_id, { title: app?.title ?? params.title ?? params.app_id, width: app?.width ?? 720, height: app?.height ?? 480 }, params.props);
    }
  };

  const submit = (e: FormEvent) => {
    e.preventDefault();
    void send(input);
  };
  const onKey = (e: KeyboardEvent<HTMLTextAreaElement>) => {
    if (e.key === 'Enter' && !e.shiftKey) {
      e.preventDefault();
      void send(input);
    }
  };

  return (
    <div className="flex h-full flex-col">
      <ol ref={log} className="flex-1 space-y-3 overflow-y-auto p-3" aria-label="Conversation" aria-live="polite" aria-busy={busy} data-testid="chat-log">
        {messages.length === 0 && (
          <li className="text-sm text-slate-600">Ask for something, e.g. “Crée un dashboard analytics”.</li>
        )}
        {messages.map((m) => (
          <li key={m.id} className={m.role === 'user' ? 'flex justify-end' : 'flex justify-start'} data-testid={`chat-${m.role}`}>
            <div className={`max-w-[85%] rounded-lg px-3 py-2 text-sm ${m.role === 'user' ? 'bg-indigo-700 text-white' : 'bg-slate-100 text-slate-900'}`}>
              <span className="sr-only">{m.role === 'user' ? 'You:' : 'Assistant:'}</span>
              {m.content && <p className="whitespace-pre-wrap break-words" data-testid="chat-answer">{m.content}</p>}
              {m.streaming && !m.content && busy && <p className="text-slate-600">Thinking…</p>}
              {m.error && (
                <p role="alert" className="mt-1 text-red-800">
                  {m.error}
                </p>
              )}
              {m.extras && <Extras extras={m.extras} answer={m.content} onAction={runAction} onSuggestion={(s) => void send(s)} disabled={busy} />}
            </div>
          </li>
        ))}
      </ol>
      <form onSubmit={submit} className="flex flex-wrap gap-2 border-t border-slate-200 p-2">
        <label className="flex w-full items-center gap-2 text-xs text-slate-800">
          Agent
          <select className="rounded border border-slate-400 px-1 py-0.5 text-xs text-slate-900" value={model} onChange={(e) => setModel(e.target.value)} data-testid="chat-model">
            {models.map((m) => (
              <option key={m} value={m}>
                {m === 'getlood' ? 'automatic (by intent and skill)' : m}
              </option>
            ))}
          </select>
        </label>
        <label htmlFor={`chat-input-${win.id}`} className="sr-only">
          Message
        </label>
        <textarea
          id={`chat-input-${win.id}`}
          rows={2}
          className="min-h-[2.5rem] flex-1 resize-none rounded-md border border-slate-400 px-2 py-1 text-sm text-slate-900 focus:border-indigo-600 focus:outline-none focus:ring-2 focus:ring-indigo-600"
          placeholder="Ask GETLOOD… (Enter sends, Shift+Enter for a new line)"
          value={input}
          onChange={(e) => setInput(e.target.value)}
          onKeyDown={onKey}
          data-testid="chat-input"
        />
        {busy ? (
          <button type="button" className="rounded-md border border-slate-400 px-3 text-sm text-slate-900" onClick={() => abort.current?.abort()}>
            Stop
          </button>
        ) : (
          <button type="submit" className="rounded-md bg-indigo-700 px-3 text-sm font-semibold text-white disabled:opacity-60" disabled={!input.trim()} data-testid="chat-send">
            Send
          </button>
        )}
      </form>
    </div>
  );
}

function Extras({ extras, answer, onAction, onSuggestion, disabled }: { extras: ChatExtras; answer: string; onAction: (a: UiAction) => void; onSuggestion: (s: string) => void; disabled: boolean }) {
  return (
    <div className="mt-2 space-y-2 border-t border-slate-300 pt-2">
      <dl className="flex flex-wrap gap-x-3 gap-y-1 text-xs text-slate-700">
        <div className="flex gap-1">
          <dt>Intent</dt>
          <dd className="font-semibold text-slate-900" data-testid="chat-intent">
            {extras.intent}
          </dd>
        </div>
        <div className="flex gap-1">
          <dt>Confidence</dt>
          <dd className="font-semibold text-slate-900" data-testid="chat-confidence">
            {pct(extras.confidence)}
          </dd>
        </div>
        {extras.agent && (
          <div className="flex gap-1">
            <dt>Agent</dt>
            <dd className="font-semibold text-slate-900" data-testid="chat-agent">
              {extras.agent.name}
            </dd>
          </div>
        )}
        <div className="flex gap-1">
          <dt>Time</dt>
          <dd>{(extras.duration_ms / 1000).toFixed(1)} s</dd>
        </div>
      </dl>
      {extras.clarification && (
        <div data-testid="chat-clarification">
          {extras.clarification.question !== answer && <p className="text-sm font-medium text-slate-900">{extras.clarification.question}</p>}
          {extras.clarification.suggestions.length === 0 && <p className="text-xs text-slate-700">Rephrase, or pick an agent below.</p>}
          <ul className="mt-1 flex flex-wrap gap-1" aria-label="Suggestions">
            {extras.clarification.suggestions.map((s) => (
              <li key={s}>
                <button type="button" disabled={disabled} className="rounded-full border border-indigo-600 px-2 py-0.5 text-xs text-indigo-800 hover:bg-indigo-50" onClick={() => onSuggestion(s)} data-testid="chat-suggestion">
                  {s}
                </button>
              </li>
            ))}
          </ul>
        </div>
      )}
      {extras.ui_actions.length > 0 && (
        <ul className="flex flex-wrap gap-1" aria-label="Actions">
          {extras.ui_actions.map((a) => (
            <li key={a.id}>
              <button
                type="button"
                className="rounded-md bg-emerald-700 px-3 py-1 text-xs font-semibold text-white hover:bg-emerald-800 focus:outline-none focus-visible:ring-2 focus-visible:ring-emerald-400"
                onClick={() => onAction(a)}
                data-testid="action-button"
                data-action-type={a.type}
              >
                {a.label || a.type}
              </button>
            </li>
          ))}
        </ul>
      )}
    </div>
  );
}
