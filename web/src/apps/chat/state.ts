import { atom } from 'jotai';
import type { ChatExtras } from '../../api/types';

export interface ChatMessage {
  id: string;
  role: 'user' | 'assistant';
  content: string;
  /** The GETLOOD extras of an answer (intent, confidence, agent, UI actions, clarification). */
  extras?: ChatExtras;
  streaming?: boolean;
  error?: string;
}

/** The conversation of this tab (the gateway keeps its turns; `conversation_id` continues it). */
export const chatMessagesAtom = atom<ChatMessage[]>([]);
export const conversationIdAtom = atom<string | null>(null);
