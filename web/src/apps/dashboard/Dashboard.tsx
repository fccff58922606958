// The analytics dashboard the chat's `open_window{app_id:"dashboard"}` opens: the tenant's
// agents, skills, workflows and runs, read from the gateway.
import { useEffect, useState } from 'react';
import { api, describe } from '../../api/client';
import type { AgentList, KnowledgeBaseList, RunList, SkillList, WorkflowList } from '../../api/types';
import type { AppProps } from '../../desktop/apps';

interface Figures {
  agents: number;
  skills: number;
  workflows: number;
  knowledgeBases: number | null;
  runs: Record<string, number>;
  recent: RunList['runs'];
}

const STATUS_COLOUR: Record<string, string> = {
  succeeded: 'bg-emerald-600',
  failed: 'bg-red-600',
  running: 'bg-sky-600',
  waiting_approval: 'bg-amber-500',
  cancelled: 'bg-slate-500',
  pending: 'bg-slate-400',
};

export default function Dashboard(_: AppProps) {
  const [figures, setFigures] = useState<Figures | null>(null);
  const [error, setError] = useState<string | null>(null);

  useEffect(() => {
    let cancelled = false;
    const load = async () => {
      try {
        const [agents, skills, workflows, runs, kbs] = await Promise.all([
          api<AgentList>('/api/v1/agents?page_size=100'),
          api<SkillList>('/api/v1/skills?page_size=100'),
          api<WorkflowList>('/api/v1/workflows?page_size=100&omit_graph=true'),
          api<RunList>('/api/v1/workflows/runs?page_size=100'),
          api<KnowledgeBaseList>('/api/v1/knowledge-bases').catch(() => null),
        ]);
        const byStatus: Record<string, number> = {};
        runs.runs.forEach((r) => (byStatus[r.status] = (byStatus[r.status] ?? 0) + 1));
        if (!cancelled)
          setFigures({
            agents: agents.total_size || agents.agents.length,
            skills: skills.total_size || skills.skills.length,
            workflows: workflows.total_size || workflows.workflows.length,
            knowledgeBases: kbs ? kbs.knowledge_bases.length : null,
            runs: byStatus,
            recent: runs.runs.slice(0, 5),
          });
      } catch (e) {
        if (!cancelled) setError(describe(e));
      }
    };
    void load();
    const t = setInterval(load, 15_000);
    return () => {
      cancelled = true;
      clearInterval(t);
    };
  }, []);

  if (error) return <p role="alert" className="p-4 text-red-800">The figures could not be read: {error}</p>;
  if (!figures) return <p className="p-4 text-slate-700">Loading figures…</p>;
  const total = Object.values(figures.runs).reduce((a, b) => a + b, 0);
  const cards: [string, number | null][] = [
    ['Agents', figures.agents],
    ['Skills', figures.skills],
    ['Workflows', figures.workflows],
    ['Knowledge bases', figures.knowledgeBases],
  ];
  return (
    <div className="space-y-4 p-4" data-testid="dashboard">
      <h2 className="text-lg font-semibold">Analytics</h2>
      <ul className="grid grid-cols-2 gap-3 md:grid-cols-4">
        {cards.map(([label, n]) => (
          <li key={label} className="rounded-lg border border-slate-200 bg-slate-50 p-3">
            <p className="text-xs uppercase tracking-wide text-slate-600">{label}</p>
            <p className="text-2xl font-bold text-slate-900">{n ?? '—'}</p>
          </li>
        ))}
      </ul>
      <section aria-labelledby="runs-by-status">
        <h3 id="runs-by-status" className="font-semibold">
          Last {total} workflow runs by status
        </h3>
        {total === 0 ? (
          <p className="text-sm text-slate-700">No runs yet.</p>
        ) : (
          <ul className="mt-2 space-y-1">
            {Object.entries(figures.runs).map(([status, n]) => (
              <li key={status} className="flex items-center gap-2 text-sm">
                <span className="w-32 text-slate-800">{status.replace('_', ' ')}</span>
                <progress className="sr-only" value={n} max={total} aria-label={`${status}: ${n} of ${total}`} />
                <span aria-hidden="true" className="h-3 flex-1 overflow-hidden rounded bg-slate-200">
                  <span className={`block h-full ${STATUS_COLOUR[status] ?? 'bg-indigo-600'}`} ref={(el) => el && (el.style.width = `${(100 * n) / total}%`)} />
                </span>
                <span className="w-8 text-right tabular-nums">{n}</span>
              </li>
            ))}
          </ul>
        )}
      </section>
    </div>
  );
}
