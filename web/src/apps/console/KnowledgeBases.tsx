import { useState, type FormEvent } from 'react';
import { api, describe } from '../../api/client';
import type { KnowledgeBase, KnowledgeBaseList } from '../../api/types';
import type { components } from '../../../../docs/api/schema';
import { danger, ErrorText, input, primary, secondary } from '../../ui/Tabs';
import { useList } from './useList';

type Hits = components['schemas']['KnowledgeBaseHits'];

export default function KnowledgeBases() {
  const { data, error, mutate } = useList(() => api<KnowledgeBaseList>('/api/v1/knowledge-bases'));
  const [name, setName] = useState('');
  const [selected, setSelected] = useState<string | null>(null);
  const [busy, setBusy] = useState(false);

  const create = async (e: FormEvent) => {
    e.preventDefault();
    setBusy(true);
    if (await mutate(() => api<KnowledgeBase>('/api/v1/knowledge-bases', { body: { name } }))) setName('');
    setBusy(false);
  };
  const remove = async (kb: KnowledgeBase) => {
    if (!window.confirm(`Delete the knowledge base ${kb.name} and its documents?`)) return;
    if (selected === kb.name) setSelected(null);
    await mutate(() => api(`/api/v1/knowledge-bases/${encodeURIComponent(kb.name)}`, { method: 'DELETE' }));
  };
  return (
    <div className="grid gap-4 lg:grid-cols-[1fr_18rem]">
      <section aria-labelledby="kbs-h">
        <h2 id="kbs-h" className="mb-2 font-semibold">Knowledge bases</h2>
        <ErrorText error={error} />
        {!data ? (
          <p className="text-sm">Loading…</p>
        ) : data.knowledge_bases.length === 0 ? (
          <p className="text-sm text-slate-700">No knowledge bases yet.</p>
        ) : (
          <ul className="divide-y divide-slate-200">
            {data.knowledge_bases.map((kb) => (
              <li key={kb.name} className="py-2 text-sm">
                <div className="flex items-center gap-2">
                  <p className="flex-1 font-semibold">
                    {kb.name} <span className="font-normal text-slate-600">· {kb.embedding_model}</span>
                  </p>
                  <button type="button" className={secondary} aria-expanded={selected === kb.name} onClick={() => setSelected(selected === kb.name ? null : kb.name)}>
                    {selected === kb.name ? 'Close' : 'Documents & search'}
                  </button>
                  <button type="button" className={danger} onClick={() => void remove(kb)} aria-label={`Delete knowledge base ${kb.name}`}>
                    Delete
                  </button>
                </div>
                {selected === kb.name && <KbDetail name={kb.name} />}
              </li>
            ))}
          </ul>
        )}
      </section>
      <form onSubmit={create} className="space-y-2 rounded-lg border border-slate-200 p-3" aria-labelledby="new-kb-h">
        <h3 id="new-kb-h" className="font-semibold">New knowledge base</h3>
        <label className="block text-sm">
          Name
          <input className={input} required pattern="[a-z][a-z0-9_]{0,62}" title="lower-case letters, digits and _" value={name} onChange={(e) => setName(e.target.value)} />
        </label>
        <button type="submit" className={primary} disabled={busy}>
          Create
        </button>
      </form>
    </div>
  );
}

function KbDetail({ name }: { name: string }) {
  const [doc, setDoc] = useState({ id: '', content: '' });
  const [q, setQ] = useState('');
  const [hits, setHits] = useState<Hits['hits'] | null>(null);
  const [note, setNote] = useState<string | null>(null);
  const [error, setError] = useState<string | null>(null);
  const base = `/api/v1/knowledge-bases/${encodeURIComponent(name)}`;
  const insert = async (e: FormEvent) => {
    e.preventDefault();
    try {
      await api(`${base}/documents`, { body: { documents: [doc] } });
      setNote(`Document ${doc.id} inserted.`);
      setDoc({ id: '', content: '' });
      setError(null);
    } catch (err) {
      setError(describe(err));
    }
  };
  const search = async (e: FormEvent) => {
    e.preventDefault();
    try {
      setHits((await api<Hits>(`${base}/search?${new URLSearchParams({ q, top_k: '5' })}`)).hits);
      setError(null);
    } catch (err) {
      setError(describe(err));
    }
  };
  return (
    <div className="mt-2 grid gap-3 rounded bg-slate-50 p-2 md:grid-cols-2">
      <form onSubmit={insert} className="space-y-1">
        <label className="block text-xs">
          Document id
          <input className={input} required value={doc.id} onChange={(e) => setDoc({ ...doc, id: e.target.value })} />
        </label>
        <label className="block text-xs">
          Content
          <textarea className={input} required rows={3} value={doc.content} onChange={(e) => setDoc({ ...doc, content: e.target.value })} />
        </label>
        <button type="submit" className={primary}>
          Insert
        </button>
        {note && <p role="status" className="text-xs text-emerald-800">{note}</p>}
      </form>
      <form onSubmit={search} className="space-y-1">
        <label className="block text-xs">
          Search
          <input className={input} required value={q} onChange={(e) => setQ(e.target.value)} />
        </label>
        <button type="submit" className={secondary}>
          Search
        </button>
        {hits && (
          <ol className="space-y-1 text-xs">
            {hits.length === 0 && <li>No match.</li>}
            {hits.map((h, i) => (
              <li key={i}>
                <span className="font-semibold">{h.relevance.toFixed(2)}</span> {h.document_id}: {h.content.slice(0, 160)}
              </li>
            ))}
          </ol>
        )}
      </form>
      <div className="md:col-span-2">
        <ErrorText error={error} />
      </div>
    </div>
  );
}
