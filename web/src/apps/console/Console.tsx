import { useState } from 'react';
import { useAtomValue } from 'jotai';
import type { AppProps } from '../../desktop/apps';
import { isAdminAtom } from '../../auth/session';
import { Tabs } from '../../ui/Tabs';
import EventFeed from './EventFeed';
import Agents from './Agents';
import Skills from './Skills';
import KnowledgeBases from './KnowledgeBases';
import Audit from './Audit';

export default function Console(_: AppProps) {
  const admin = useAtomValue(isAdminAtom);
  const [tab, setTab] = useState('events');
  const tabs = [
    { id: 'events', label: 'Live events' },
    { id: 'agents', label: 'Agents' },
    { id: 'skills', label: 'Skills' },
    { id: 'kbs', label: 'Knowledge bases' },
    ...(admin ? [{ id: 'audit', label: 'Audit log' }] : []),
  ];
  return (
    <Tabs tabs={tabs} active={tab} onChange={setTab} label="Console" idPrefix="console">
      {tab === 'events' && <EventFeed />}
      {tab === 'agents' && <Agents />}
      {tab === 'skills' && <Skills />}
      {tab === 'kbs' && <KnowledgeBases />}
      {tab === 'audit' && admin && <Audit />}
    </Tabs>
  );
}
