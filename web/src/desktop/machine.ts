// desktopSystemMachine: the window manager's state (the seed's XState machine). It holds what
// the screen shows; desktop/bridge.ts persists each change through the desktop REST API and
// feeds back the server's answers and other clients' events.
import { assign, setup } from 'xstate';
import type { Desktop, EventJson, Win, WindowStateName } from '../api/types';

export interface Conflict {
  windowId: string;
  /** The window as this client wanted it. */
  mine: Win;
  /** The window as the server holds it now. */
  theirs: Win;
}

export interface DesktopContext {
  desktopId: string;
  desktopVersion: number;
  windows: Record<string, Win>;
  /** Window ids, most recently focused first. */
  focusStack: string[];
  /** Windows with local changes the server has not confirmed: remote events don't move them. */
  pending: Record<string, number>;
  conflict: Conflict | null;
  error: string | null;
}

export type DesktopEvent =
  | { type: 'RESTORE_STATE'; desktop: Desktop }
  | { type: 'LOAD_FAILED'; message: string }
  | { type: 'OPENED'; window: Win; focusStack: string[]; desktopVersion: number }
  | { type: 'MOVE'; id: string; x: number; y: number }
  | { type: 'RESIZE'; id: string; width: number; height: number }
  | { type: 'FOCUS'; id: string }
  | { type: 'SET_STATE'; id: string; state: WindowStateName }
  | { type: 'CLOSE'; id: string }
  | { type: 'PENDING'; id: string; delta: 1 | -1 }
  | { type: 'SERVER_WINDOW'; window: Win; focusStack?: string[] | null }
  | { type: 'SERVER_CLOSED'; id: string; focusStack: string[]; desktopVersion: number }
  | { type: 'REMOTE_EVENT'; event: EventJson }
  | { type: 'CONFLICT'; conflict: Conflict }
  | { type: 'CONFLICT_RESOLVED' }
  | { type: 'ERROR'; message: string }
  | { type: 'DISMISS_ERROR' };

const MIN_W = 240;
const MIN_H = 160;

function topZ(windows: Record<string, Win>): number {
  return Object.values(windows).reduce((m, w) => Math.max(m, w.z_index), 0);
}

function byId(list: Win[]): Record<string, Win> {
  return Object.fromEntries(list.map((w) => [w.id, w]));
}

/** Applies another client's (or our own, echoed) event; stale versions are skipped. */
function applyRemote(ctx: DesktopContext, e: EventJson): Partial<DesktopContext> | null {
  const d = (e.data ?? {}) as Record<string, unknown>;
  const id = String(d.window_id ?? '');
  const current = ctx.windows[id];
  const fresh = (v: unknown) => current && typeof v === 'number' && v > current.version && !ctx.pending[id];
  switch (e.type) {
    case 'window.opened': {
      const w = d.window as Win | undefined;
      if (!w || ctx.windows[w.id]) return null;
      return {
        windows: { ...ctx.windows, [w.id]: w },
        focusStack: (d.focus_stack as string[]) ?? ctx.focusStack,
        desktopVersion: Math.max(ctx.desktopVersion, Number(d.desktop_version ?? 0)),
      };
    }
    case 'window.moved': {
      if (!fresh(d.version)) return null;
      const g = (d.geometry ?? {}) as Partial<Pick<Win, 'x' | 'y' | 'width' | 'height'>>;
      return { windows: { ...ctx.windows, [id]: { ...current, ...g, version: Number(d.version) } } };
    }
    case 'window.focused': {
      if (!current) return null;
      const stack = (d.focus_stack as string[]) ?? ctx.focusStack;
      if (!fresh(d.version)) return { focusStack: stack };
      return {
        focusStack: stack,
        windows: {
          ...ctx.windows,
          [id]: {
            ...current,
            z_index: Number(d.z_index ?? current.z_index),
            state: (d.state as WindowStateName) || current.state,
            version: Number(d.version),
          },
        },
      };
    }
    case 'window.state_changed': {
      if (!fresh(d.version)) return null;
      return {
        focusStack: (d.focus_stack as string[]) ?? ctx.focusStack,
        windows: { ...ctx.windows, [id]: { ...current, state: d.state as WindowStateName, version: Number(d.version) } },
      };
    }
    case 'window.closed': {
      if (!current) return null;
      const { [id]: _closed, ...rest } = ctx.windows;
      return { windows: rest, focusStack: (d.focus_stack as string[]) ?? ctx.focusStack.filter((f) => f !== id) };
    }
    default:
      return null;
  }
}

export const desktopSystemMachine = setup({
  types: {
    context: {} as DesktopContext,
    events: {} as DesktopEvent,
    input: {} as { desktopId: string },
  },
  actions: {
    restore: assign(({ event }) => {
      if (event.type !== 'RESTORE_STATE') return {};
      const d = event.desktop;
      return { desktopId: d.id, desktopVersion: d.version, windows: byId(d.windows), focusStack: d.focus_stack, pending: {}, conflict: null, error: null };
    }),
  },
}).createMachine({
  id: 'desktopSystem',
  context: ({ input }) => ({
    desktopId: input.desktopId,
    desktopVersion: 0,
    windows: {},
    focusStack: [],
    pending: {},
    conflict: null,
    error: null,
  }),
  initial: 'loading',
  on: {
    RESTORE_STATE: { target: '.ready', actions: 'restore' },
  },
  states: {
    loading: {
      on: { LOAD_FAILED: { target: 'failed', actions: assign({ error: ({ event }) => event.message }) } },
    },
    failed: {},
    ready: {
      on: {
        OPENED: {
          actions: assign(({ context, event }) => ({
            windows: { ...context.windows, [event.window.id]: event.window },
            focusStack: event.focusStack,
            desktopVersion: Math.max(context.desktopVersion, event.desktopVersion),
          })),
        },
        MOVE: {
          guard: ({ context, event }) => !!context.windows[event.id],
          actions: assign(({ context, event }) => ({
            windows: { ...context.windows, [event.id]: { ...context.windows[event.id], x: Math.round(event.x), y: Math.max(0, Math.round(event.y)) } },
          })),
        },
        RESIZE: {
          guard: ({ context, event }) => !!context.windows[event.id],
          actions: assign(({ context, event }) => ({
            windows: {
              ...context.windows,
              [event.id]: {
                ...context.windows[event.id],
                width: Math.max(MIN_W, Math.round(event.width)),
                height: Math.max(MIN_H, Math.round(event.height)),
              },
            },
          })),
        },
        FOCUS: {
          guard: ({ context, event }) => !!context.windows[event.id],
          actions: assign(({ context, event }) => {
            const w = context.windows[event.id];
            const top = topZ(context.windows);
            return {
              windows: { ...context.windows, [event.id]: { ...w, z_index: w.z_index === top && context.focusStack[0] === w.id ? w.z_index : top + 1 } },
              focusStack: [event.id, ...context.focusStack.filter((f) => f !== event.id)],
            };
          }),
        },
        SET_STATE: {
          guard: ({ context, event }) => !!context.windows[event.id],
          actions: assign(({ context, event }) => ({
            windows: { ...context.windows, [event.id]: { ...context.windows[event.id], state: event.state } },
          })),
        },
        CLOSE: {
          actions: assign(({ context, event }) => {
            const { [event.id]: _closed, ...rest } = context.windows;
            return { windows: rest, focusStack: context.focusStack.filter((f) => f !== event.id) };
          }),
        },
        PENDING: {
          actions: assign(({ context, event }) => {
            const n = (context.pending[event.id] ?? 0) + event.delta;
            const { [event.id]: _old, ...rest } = context.pending;
            return { pending: n > 0 ? { ...rest, [event.id]: n } : rest };
          }),
        },
        SERVER_WINDOW: {
          actions: assign(({ context, event }) => {
            const w = event.window;
            const mine = context.windows[w.id];
            if (!mine) return {};
            // Versions only go forward; geometry the user is still changing stays local.
            const merged: Win = context.pending[w.id] ? { ...mine, version: Math.max(mine.version, w.version) } : { ...w, version: Math.max(mine.version, w.version) };
            return { windows: { ...context.windows, [w.id]: merged }, focusStack: event.focusStack ?? context.focusStack };
          }),
        },
        SERVER_CLOSED: {
          actions: assign(({ context, event }) => {
            const { [event.id]: _closed, ...rest } = context.windows;
            return { windows: rest, focusStack: event.focusStack, desktopVersion: Math.max(context.desktopVersion, event.desktopVersion) };
          }),
        },
        REMOTE_EVENT: {
          actions: assign(({ context, event }) => applyRemote(context, event.event) ?? {}),
        },
        CONFLICT: { actions: assign({ conflict: ({ event }) => event.conflict }) },
        CONFLICT_RESOLVED: { actions: assign({ conflict: null }) },
        ERROR: { actions: assign({ error: ({ event }) => event.message }) },
        DISMISS_ERROR: { actions: assign({ error: null }) },
      },
    },
  },
});

/** Windows bottom first, as they stack. */
export function stacked(ctx: DesktopContext): Win[] {
  return Object.values(ctx.windows).sort((a, b) => a.z_index - b.z_index);
}
