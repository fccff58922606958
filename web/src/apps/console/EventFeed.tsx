import { useEffect, useState } from 'react';
import { atom, useAtom, useAtomValue } from 'jotai';
import { subscribeEvents } from '../../api/events';
import type { EventJson } from '../../api/types';
import { isAdminAtom } from '../../auth/session';

const MAX = 200;
/** The feed survives switching tabs; newest first. */
const feedAtom = atom<EventJson[]>([]);

export default function EventFeed() {
  const admin = useAtomValue(isAdminAtom);
  const [events, setEvents] = useAtom(feedAtom);
  const [status, setStatus] = useState<'connecting' | 'open' | 'closed'>('connecting');
  const [filter, setFilter] = useState('');

  useEffect(
    () =>
      subscribeEvents({
        // Window events of every desktop need admin; others see their tenant's agents, turns and runs.
        topics: admin ? ['agent', 'turn', 'window', 'workflow', 'audit'] : ['agent', 'turn', 'workflow'],
        onEvent: (e) => setEvents((es) => [e, ...es.filter((x) => x.id !== e.id)].slice(0, MAX)),
        onStatus: setStatus,
      }),
    [admin, setEvents],
  );

  const shown = filter ? events.filter((e) => e.type.includes(filter) || e.entity_id.includes(filter)) : events;
  return (
    <div>
      <div className="mb-2 flex flex-wrap items-end gap-2">
        <p className="text-sm text-slate-700" role="status" data-testid="feed-status">
          Live: {status}
        </p>
        <label className="ml-auto text-sm text-slate-800">
          Filter
          <input className="ml-2 rounded border border-slate-400 px-2 py-0.5 text-sm" value={filter} onChange={(e) => setFilter(e.target.value)} placeholder="e.g. node. or an id" />
        </label>
      </div>
      {shown.length === 0 ? (
        <p className="text-sm text-slate-700">No events since this console opened. Chat, run a workflow or change an agent to see them here.</p>
      ) : (
        <table className="w-full text-left text-xs" data-testid="event-feed">
          <caption className="sr-only">The tenant's live events, newest first</caption>
          <thead>
            <tr className="border-b border-slate-300 text-slate-700">
              <th scope="col" className="py-1 pr-2">Time</th>
              <th scope="col" className="pr-2">Type</th>
              <th scope="col" className="pr-2">Entity</th>
              <th scope="col">Details</th>
            </tr>
          </thead>
          <tbody>
            {shown.map((e) => (
              <tr key={e.id} className="border-b border-slate-100 align-top">
                <td className="whitespace-nowrap py-1 pr-2 tabular-nums">{e.occurred_at ? new Date(e.occurred_at).toLocaleTimeString() : ''}</td>
                <td className="pr-2 font-mono">{e.type}</td>
                <td className="max-w-[10rem] truncate pr-2 font-mono" title={e.entity_id}>
                  {e.entity_id}
                </td>
                <td className="max-w-[24rem] truncate font-mono text-slate-700" title={JSON.stringify(e.data)}>
                  {JSON.stringify(e.data)}
                </td>
              </tr>
            ))}
          </tbody>
        </table>
      )}
    </div>
  );
}
