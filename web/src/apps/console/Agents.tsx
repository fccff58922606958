import { useState, type FormEvent } from 'react';
import { api } from '../../api/client';
import type { Agent, AgentList } from '../../api/types';
import { danger, ErrorText, input, primary } from '../../ui/Tabs';
import { useList } from './useList';

export default function Agents() {
  const { data, error, mutate } = useList(() => api<AgentList>('/api/v1/agents?page_size=100'));
  const [form, setForm] = useState({ name: '', description: '', skills: '', provider: 'openai', model_name: 'gpt-4', base_url: 'http://127.0.0.1:18080/v1', api_key: '' });
  const [busy, setBusy] = useState(false);

  const create = async (e: FormEvent) => {
    e.preventDefault();
    setBusy(true);
    const created = await mutate(() =>
      api<Agent>('/api/v1/agents', {
        body: {
          name: form.name,
          description: form.description,
          skills: form.skills.split(',').map((s) => s.trim()).filter(Boolean),
          model: { provider: form.provider, model_name: form.model_name, base_url: form.base_url || undefined, api_key: form.api_key || undefined },
        },
      }),
    );
    if (created) setForm({ ...form, name: '', description: '', skills: '' });
    setBusy(false);
  };
  const remove = async (a: Agent) => {
    if (window.confirm(`Delete the agent ${a.name}?`)) await mutate(() => api(`/api/v1/agents/${encodeURIComponent(a.id)}?expected_version=${a.version}`, { method: 'DELETE' }));
  };
  const set = (k: keyof typeof form) => (e: { target: { value: string } }) => setForm({ ...form, [k]: e.target.value });

  return (
    <div className="grid gap-4 lg:grid-cols-[1fr_18rem]">
      <section aria-labelledby="agents-h">
        <h2 id="agents-h" className="mb-2 font-semibold">Agents</h2>
        <ErrorText error={error} />
        {!data ? (
          <p className="text-sm">Loading…</p>
        ) : data.agents.length === 0 ? (
          <p className="text-sm text-slate-700">No agents yet: the chat needs one with a skill that matches the request (e.g. ui-generation).</p>
        ) : (
          <ul className="divide-y divide-slate-200" data-testid="agent-list">
            {data.agents.map((a) => (
              <li key={a.id} className="flex items-start gap-2 py-2 text-sm">
                <div className="min-w-0 flex-1">
                  <p className="font-semibold">
                    {a.name} <span className="font-normal text-slate-600">v{a.version}</span>
                  </p>
                  <p className="text-slate-700">{a.description}</p>
                  <p className="text-xs text-slate-600">
                    Skills: {a.skills.join(', ') || 'none'} · Model: {a.model ? `${a.model.provider}/${a.model.model_name}` : '—'}
                  </p>
                </div>
                <button type="button" className={danger} onClick={() => void remove(a)} aria-label={`Delete agent ${a.name}`}>
                  Delete
                </button>
              </li>
            ))}
          </ul>
        )}
      </section>
      <form onSubmit={create} className="space-y-2 rounded-lg border border-slate-200 p-3" aria-labelledby="new-agent-h">
        <h3 id="new-agent-h" className="font-semibold">New agent</h3>
        <label className="block text-sm">
          Name
          <input className={input} required pattern="[a-z][a-z0-9_]{0,62}" title="lower-case letters, digits and _" value={form.name} onChange={set('name')} />
        </label>
        <label className="block text-sm">
          Description
          <input className={input} value={form.description} onChange={set('description')} />
        </label>
        <label className="block text-sm">
          Skills (comma-separated)
          <input className={input} value={form.skills} onChange={set('skills')} />
        </label>
        <label className="block text-sm">
          Provider
          <input className={input} required value={form.provider} onChange={set('provider')} />
        </label>
        <label className="block text-sm">
          Model
          <input className={input} required value={form.model_name} onChange={set('model_name')} />
        </label>
        <label className="block text-sm">
          Base URL
          <input className={input} value={form.base_url} onChange={set('base_url')} />
        </label>
        <label className="block text-sm">
          API key
          <input className={input} type="password" autoComplete="off" value={form.api_key} onChange={set('api_key')} />
        </label>
        <button type="submit" className={primary} disabled={busy}>
          {busy ? 'Creating… (the model is checked)' : 'Create agent'}
        </button>
      </form>
    </div>
  );
}
