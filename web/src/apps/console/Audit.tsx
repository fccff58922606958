import { useEffect, useState, type FormEvent } from 'react';
import { api, describe } from '../../api/client';
import type { AuditEvent, AuditList } from '../../api/types';
import { ErrorText, input, secondary } from '../../ui/Tabs';

/** The tenant's audit log (admins): the last day, newest first, filtered by action or outcome. */
export default function Audit() {
  const [events, setEvents] = useState<AuditEvent[] | null>(null);
  const [next, setNext] = useState('');
  const [filters, setFilters] = useState({ action: '', outcome: '', hours: '24' });
  const [error, setError] = useState<string | null>(null);

  const query = (token = '') => {
    const q = new URLSearchParams({ page_size: '100', since: new Date(Date.now() - Number(filters.hours) * 3600_000).toISOString() });
    if (filters.action) q.set('action', filters.action);
    if (filters.outcome) q.set('outcome', filters.outcome);
    if (token) q.set('page_token', token);
    return `/api/v1/audit?${q}`;
  };
  const load = async (token = '') => {
    try {
      const page = await api<AuditList>(query(token));
      setEvents((old) => (token && old ? [...old, ...page.events] : page.events));
      setNext(page.next_page_token);
      setError(null);
    } catch (e) {
      setError(describe(e));
    }
  };
  useEffect(() => {
    void load();
    // eslint-disable-next-line react-hooks/exhaustive-deps
  }, []);
  const submit = (e: FormEvent) => {
    e.preventDefault();
    void load();
  };
  const newestFirst = events ? [...events].reverse() : null;
  return (
    <section aria-labelledby="audit-h">
      <h2 id="audit-h" className="mb-2 font-semibold">Audit log</h2>
      <form onSubmit={submit} className="mb-3 flex flex-wrap items-end gap-2">
        <label className="text-sm">
          Action
          <input className={input} placeholder="e.g. agents.create" value={filters.action} onChange={(e) => setFilters({ ...filters, action: e.target.value })} />
        </label>
        <label className="text-sm">
          Outcome
          <select className={input} value={filters.outcome} onChange={(e) => setFilters({ ...filters, outcome: e.target.value })}>
            <option value="">any</option>
            <option value="allowed">allowed</option>
            <option value="denied">denied</option>
            <option value="error">error</option>
          </select>
        </label>
        <label className="text-sm">
          Last
          <select className={input} value={filters.hours} onChange={(e) => setFilters({ ...filters, hours: e.target.value })}>
            <option value="1">hour</option>
            <option value="24">day</option>
            <option value="168">week</option>
          </select>
        </label>
        <button type="submit" className={secondary}>
          Apply
        </button>
      </form>
      <ErrorText error={error} />
      {newestFirst && (
        <table className="w-full text-left text-xs" data-testid="audit-log">
          <caption className="sr-only">Audit events, newest first</caption>
          <thead>
            <tr className="border-b border-slate-300 text-slate-700">
              <th scope="col" className="py-1 pr-2">Time</th>
              <th scope="col" className="pr-2">User</th>
              <th scope="col" className="pr-2">Action</th>
              <th scope="col" className="pr-2">Outcome</th>
              <th scope="col" className="pr-2">Status</th>
              <th scope="col">Target</th>
            </tr>
          </thead>
          <tbody>
            {newestFirst.map((e) => (
              <tr key={e.id} className="border-b border-slate-100">
                <td className="whitespace-nowrap py-1 pr-2 tabular-nums">{e.time ? new Date(e.time).toLocaleString() : ''}</td>
                <td className="pr-2">{e.user}</td>
                <td className="pr-2 font-mono">{e.action}</td>
                <td className={`pr-2 ${e.outcome === 'denied' ? 'text-red-800' : e.outcome === 'error' ? 'text-amber-800' : ''}`}>{e.outcome}</td>
                <td className="pr-2 tabular-nums">{e.status}</td>
                <td className="max-w-[12rem] truncate font-mono" title={e.reason || e.target}>
                  {e.target}
                  {e.reason ? ` — ${e.reason}` : ''}
                </td>
              </tr>
            ))}
          </tbody>
        </table>
      )}
      {newestFirst?.length === 0 && <p className="text-sm">No events in this period.</p>}
      {next && (
        <button type="button" className={`${secondary} mt-2`} onClick={() => void load(next)}>
          Load more
        </button>
      )}
    </section>
  );
}
