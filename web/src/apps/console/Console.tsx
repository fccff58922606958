import { useEffect, useState } from 'react';
import { api } from '../../api/client';
import { useAtomValue } from 'jotai';
import type { AppProps } from '../../desktop/apps';
import { isAdminAtom } from '../../auth/session';
import { Tabs } from '../../ui/Tabs';
import EventFeed from './EventFeed';
import Agents from './Agents';
import Skills from './Skills';
import KnowledgeBases from './KnowledgeBases';
import Audit from './Audit';
import Users from './Users';

export default function Console(_: AppProps) {
  const admin = useAtomValue(isAdminAtom);
  const [tab, setTab] = useState('events');
  const [builtin, setBuiltin] = useState(false);
  useEffect(() => {
    api<{ mode: string }>('/api/v1/auth/config', { anonymous: true })
      .then((c) => setBuiltin(c.mode === 'builtin'))
      .catch(() => setBuiltin(false));
  }, []);
  const tabs = [
    { id: 'events', label: 'Live events' },
    { id: 'agents', label: 'Agents' },
    { id: 'skills', label: 'Skills' },
    { id: 'kbs', label: 'Knowledge bases' },
    ...(admin ? [{ id: 'audit', label: 'Audit log' }] : []),
    ...(admin && builtin ? [{ id: 'users', label: 'Users' }] : []),
  ];
  return (
    <Tabs tabs={tabs} active={tab} onChange={setTab} label="Console" idPrefix="console">
      {tab === 'events' && <EventFeed />}
      {tab === 'agents' && <Agents />}
      {tab === 'skills' && <Skills />}
      {tab === 'kbs' && <KnowledgeBases />}
      {tab === 'audit' && admin && <Audit />}
      {tab === 'users' && admin && builtin && <Users />}
    </Tabs>
  );
}
