import { atomWithStorage, createJSONStorage } from 'jotai/utils';
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

/** Keys the chat keeps in the browser; signing out removes them. */
export const CHAT_KEYS = ['getlood.chat.messages', 'getlood.chat.conversation'];

// localStorage: the conversation survives a reload and shows in every tab of the session.
const storage = createJSONStorage<ChatMessage[]>(() => localStorage);

/** The conversation on this desktop (the gateway keeps its turns; `conversation_id` continues it). */
export const chatMessagesAtom = atomWithStorage<ChatMessage[]>(CHAT_KEYS[0], [], storage, { getOnInit: true });
export const conversationIdAtom = atomWithStorage<string | null>(CHAT_KEYS[1], null, undefined, { getOnInit: true });
