import { createContext, useContext } from 'react';
import type { Violation } from '../../api/types';

export type NodeStatus = 'idle' | 'pending' | 'running' | 'succeeded' | 'failed' | 'waiting_approval' | 'skipped' | 'cancelled';

export interface NodeLive {
  status: NodeStatus;
  durationMs?: number;
  error?: string;
  message?: string;
  attempt?: number;
}

export interface CanvasState {
  live: Record<string, NodeLive>;
  problems: Record<string, Violation[]>;
  approve: (nodeId: string, approved: boolean) => void;
  approving: boolean;
}

/** What the nodes show besides their settings: run status, durations, validation problems. */
export const CanvasContext = createContext<CanvasState>({ live: {}, problems: {}, approve: () => undefined, approving: false });

export function useCanvas(): CanvasState {
  return useContext(CanvasContext);
}
