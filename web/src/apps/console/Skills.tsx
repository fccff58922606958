import { useState, type FormEvent } from 'react';
import { api } from '../../api/client';
import type { Skill, SkillList } from '../../api/types';
import { danger, ErrorText, input, primary } from '../../ui/Tabs';
import { useList } from './useList';

export default function Skills() {
  const { data, error, mutate } = useList(() => api<SkillList>('/api/v1/skills?page_size=100'));
  const [form, setForm] = useState({ name: '', description: '', prompt_fragment: '' });

  const create = async (e: FormEvent) => {
    e.preventDefault();
    if (await mutate(() => api<Skill>('/api/v1/skills', { body: form }))) setForm({ name: '', description: '', prompt_fragment: '' });
  };
  const remove = async (s: Skill) => {
    if (window.confirm(`Delete the skill ${s.name}?`)) await mutate(() => api(`/api/v1/skills/${encodeURIComponent(s.name)}?expected_version=${s.version}`, { method: 'DELETE' }));
  };
  return (
    <div className="grid gap-4 lg:grid-cols-[1fr_18rem]">
      <section aria-labelledby="skills-h">
        <h2 id="skills-h" className="mb-2 font-semibold">Skills</h2>
        <ErrorText error={error} />
        {!data ? (
          <p className="text-sm">Loading…</p>
        ) : data.skills.length === 0 ? (
          <p className="text-sm text-slate-700">No skills yet.</p>
        ) : (
          <ul className="divide-y divide-slate-200" data-testid="skill-list">
            {data.skills.map((s) => (
              <li key={s.name} className="flex items-start gap-2 py-2 text-sm">
                <div className="min-w-0 flex-1">
                  <p className="font-semibold">{s.name}</p>
                  <p className="text-slate-700">{s.description}</p>
                </div>
                <button type="button" className={danger} onClick={() => void remove(s)} aria-label={`Delete skill ${s.name}`}>
                  Delete
                </button>
              </li>
            ))}
          </ul>
        )}
      </section>
      <form onSubmit={create} className="space-y-2 rounded-lg border border-slate-200 p-3" aria-labelledby="new-skill-h">
        <h3 id="new-skill-h" className="font-semibold">New skill</h3>
        <label className="block text-sm">
          Name
          <input className={input} required value={form.name} onChange={(e) => setForm({ ...form, name: e.target.value })} />
        </label>
        <label className="block text-sm">
          Description
          <input className={input} value={form.description} onChange={(e) => setForm({ ...form, description: e.target.value })} />
        </label>
        <label className="block text-sm">
          Prompt fragment
          <textarea className={input} rows={3} value={form.prompt_fragment} onChange={(e) => setForm({ ...form, prompt_fragment: e.target.value })} />
        </label>
        <button type="submit" className={primary}>
          Create skill
        </button>
      </form>
    </div>
  );
}
