// The apps a window can show. Each app's code is its own chunk, loaded when a window needs it
// (the workflow editor and React Flow are not part of the first screen).
import { lazy, type ComponentType } from 'react';
import type { Win } from '../api/types';

export interface AppProps {
  window: Win;
}

export interface AppDef {
  id: string;
  title: string;
  /** Launcher label and its test id. */
  launcher: string;
  testId: string;
  width: number;
  height: number;
  component: ComponentType<AppProps>;
}

export const APPS: AppDef[] = [
  { id: 'chat', title: 'Chat', launcher: 'Chat', testId: 'chat-universe', width: 520, height: 600, component: lazy(() => import('../apps/chat/Chat')) },
  { id: 'dashboard', title: 'Analytics dashboard', launcher: 'Dashboard', testId: 'launch-dashboard', width: 720, height: 480, component: lazy(() => import('../apps/dashboard/Dashboard')) },
  { id: 'workflow', title: 'Workflows', launcher: 'Workflows', testId: 'workflow-universe', width: 1100, height: 640, component: lazy(() => import('../apps/workflow/WorkflowApp')) },
  { id: 'console', title: 'Console', launcher: 'Console', testId: 'console-universe', width: 960, height: 600, component: lazy(() => import('../apps/console/Console')) },
];

/** Apps the pipeline's `open_window` actions name that this desktop shows with another app. */
const ALIASES: Record<string, string> = { report: 'dashboard', terminal: 'console', workflows: 'workflow' };

export function appFor(appId: string): AppDef | undefined {
  const id = ALIASES[appId] ?? appId;
  return APPS.find((a) => a.id === id);
}
