// The seed's useDesktopBridge: every change of desktopSystemMachine is persisted through the
// desktop REST API with optimistic versions (geometry debounced; one request per window in
// flight), other clients' changes arrive over /ws/events, and a reload restores the state.
import type { ActorRefFrom } from 'xstate';
import { api, ApiError, describe } from '../api/client';
import { subscribeEvents } from '../api/events';
import type { ChangedWindow, ClosedWindow, Desktop, DesktopList, OpenedWindow, Win, WindowStateName } from '../api/types';
import type { desktopSystemMachine } from './machine';

type Actor = ActorRefFrom<typeof desktopSystemMachine>;

/** How long geometry settles before it is saved (a drag sends one PATCH, not hundreds). */
export const GEOMETRY_DEBOUNCE_MS = 300;

const ACTION_PATH: Record<WindowStateName, string> = { minimized: 'minimize', maximized: 'maximize', normal: 'restore' };

export interface AppSpec {
  title: string;
  width: number;
  height: number;
}

export class DesktopBridge {
  private queues = new Map<string, Promise<void>>();
  private dirty = new Map<string, ReturnType<typeof setTimeout>>();
  private marked = new Set<string>();
  onSocket: ((s: 'connecting' | 'open' | 'closed') => void) | null = null;

  constructor(
    private actor: Actor,
    private userKey: string,
  ) {}

  private get ctx() {
    return this.actor.getSnapshot().context;
  }

  private win(id: string): Win | undefined {
    return this.ctx.windows[id];
  }

  /**
   * Finds (or creates, once per user) the desktop, loads it and follows its events; the
   * returned function stops following (React's effects may start and stop more than once).
   */
  start(): () => void {
    let stopped = false;
    let stopEvents: (() => void) | null = null;
    void (async () => {
      try {
        const list = await api<DesktopList>('/api/v1/desktops?page_size=1');
        let desktop = list.desktops[0];
        if (!desktop) {
          desktop = await api<Desktop>('/api/v1/desktops', { body: { name: 'Main', request_id: `main-desktop-${this.userKey}` } });
        }
        if (stopped) return;
        await this.reload(desktop.id);
        if (stopped) return;
        stopEvents = subscribeEvents({
          topics: ['window'],
          entityId: desktop.id,
          onEvent: (event) => {
            if (event.type.startsWith('desktop.')) void this.reload(desktop.id);
            else this.actor.send({ type: 'REMOTE_EVENT', event });
          },
          onResync: () => void this.reload(desktop.id),
          onStatus: (s) => this.onSocket?.(s),
        });
      } catch (e) {
        if (!stopped) this.actor.send({ type: 'LOAD_FAILED', message: describe(e) });
      }
    })();
    // Geometry still waiting for its debounce is saved now when the page goes away (keepalive
    // requests outlive it), so a reload right after a drag keeps the drag.
    const flush = () => {
      for (const [id, timer] of this.dirty) {
        clearTimeout(timer);
        this.dirty.delete(id);
        void this.enqueue(id, () => this.saveGeometry(id));
      }
    };
    window.addEventListener('pagehide', flush);
    return () => {
      stopped = true;
      stopEvents?.();
      window.removeEventListener('pagehide', flush);
    };
  }

  async reload(id = this.ctx.desktopId): Promise<void> {
    const desktop = await api<Desktop>(`/api/v1/desktops/${encodeURIComponent(id)}`);
    this.actor.send({ type: 'RESTORE_STATE', desktop });
  }

  /** Runs `op` after the window's earlier operations, so each sees the version the last one left. */
  private enqueue(id: string, op: () => Promise<void>): Promise<void> {
    if (!this.marked.has(id)) {
      this.marked.add(id);
      this.actor.send({ type: 'PENDING', id, delta: 1 });
    }
    const next = (this.queues.get(id) ?? Promise.resolve()).then(op).catch((e) => {
      if (!(e instanceof ApiError && e.status === 409)) this.actor.send({ type: 'ERROR', message: describe(e) });
    });
    this.queues.set(id, next);
    void next.then(() => {
      if (this.queues.get(id) === next && !this.dirty.has(id) && !this.ctx.conflict) {
        this.queues.delete(id);
        this.settle(id);
      }
    });
    return next;
  }

  private settle(id: string) {
    if (this.marked.delete(id)) this.actor.send({ type: 'PENDING', id, delta: -1 });
  }

  /** Opens an app's window, or brings its window forward when one is open; its id, if any. */
  async open(appId: string, spec: AppSpec, props?: Record<string, unknown>): Promise<string | null> {
    const existing = Object.values(this.ctx.windows).find((w) => w.app_id === appId);
    if (existing) {
      if (existing.state === 'minimized') this.setState(existing.id, 'normal');
      this.focus(existing.id);
      return existing.id;
    }
    const open = Object.values(this.ctx.windows).filter((w) => w.state !== 'minimized');
    const vw = window.innerWidth;
    const vh = window.innerHeight - 56;
    const width = Math.min(spec.width, Math.max(280, vw - 24));
    const height = Math.min(spec.height, Math.max(200, vh - 24));
    // Beside the open windows when there is room, else cascaded over them.
    const beside = open.map((w) => w.x + w.width + 16).sort((a, b) => b - a)[0] ?? 24;
    const fits = beside + width <= vw;
    const n = open.length;
    const x = fits ? beside : Math.max(0, Math.min(vw - width, 24 + (n % 6) * 32));
    const y = fits ? 16 : Math.max(0, Math.min(vh - height, 16 + (n % 6) * 28));
    try {
      const opened = await api<OpenedWindow>(`/api/v1/desktops/${encodeURIComponent(this.ctx.desktopId)}/windows`, {
        body: {
          app_id: appId,
          title: spec.title,
          x,
          y,
          width,
          height,
          props: props ?? {},
          request_id: crypto.randomUUID(),
        },
      });
      if (!opened.window) return null;
      this.actor.send({ type: 'OPENED', window: opened.window, focusStack: opened.focus_stack, desktopVersion: opened.desktop_version });
      return opened.window.id;
    } catch (e) {
      this.actor.send({ type: 'ERROR', message: `Could not open ${spec.title}: ${describe(e)}` });
      return null;
    }
  }

  move(id: string, x: number, y: number): void {
    this.actor.send({ type: 'MOVE', id, x, y });
    this.scheduleGeometry(id);
  }

  resize(id: string, width: number, height: number): void {
    this.actor.send({ type: 'RESIZE', id, width, height });
    this.scheduleGeometry(id);
  }

  private scheduleGeometry(id: string) {
    if (!this.marked.has(id)) {
      this.marked.add(id);
      this.actor.send({ type: 'PENDING', id, delta: 1 });
    }
    clearTimeout(this.dirty.get(id));
    this.dirty.set(
      id,
      setTimeout(() => {
        this.dirty.delete(id);
        void this.enqueue(id, () => this.saveGeometry(id));
      }, GEOMETRY_DEBOUNCE_MS),
    );
  }

  private async saveGeometry(id: string, expected?: number): Promise<void> {
    const w = this.win(id);
    if (!w) return;
    try {
      const changed = await api<ChangedWindow>(`/api/v1/windows/${encodeURIComponent(id)}`, {
        method: 'PATCH',
        body: { x: w.x, y: w.y, width: w.width, height: w.height, expected_version: expected ?? w.version },
        keepalive: true,
      });
      if (changed.window) this.actor.send({ type: 'SERVER_WINDOW', window: changed.window });
    } catch (e) {
      if (e instanceof ApiError && e.status === 409) {
        // Another client changed the window since this one last saw it: show both and let the
        // user choose instead of silently overwriting either.
        const theirs = await api<Win>(`/api/v1/windows/${encodeURIComponent(id)}`);
        this.actor.send({ type: 'CONFLICT', conflict: { windowId: id, mine: { ...w }, theirs } });
      }
      throw e;
    }
  }

  /** The user's answer to a conflict: keep this client's geometry, or take the server's. */
  async resolveConflict(keep: 'mine' | 'theirs'): Promise<void> {
    const c = this.ctx.conflict;
    if (!c) return;
    this.actor.send({ type: 'CONFLICT_RESOLVED' });
    if (keep === 'mine') {
      this.actor.send({ type: 'MOVE', id: c.windowId, x: c.mine.x, y: c.mine.y });
      this.actor.send({ type: 'RESIZE', id: c.windowId, width: c.mine.width, height: c.mine.height });
      await this.enqueue(c.windowId, () => this.saveGeometry(c.windowId, c.theirs.version));
    } else {
      this.settle(c.windowId);
      this.actor.send({ type: 'SERVER_WINDOW', window: c.theirs });
    }
  }

  private async action(id: string, action: string, retried = false): Promise<ChangedWindow | undefined> {
    const w = this.win(id);
    if (!w) return undefined;
    try {
      return await api<ChangedWindow>(`/api/v1/windows/${encodeURIComponent(id)}/${action}`, {
        body: { expected_version: w.version },
        keepalive: true,
      });
    } catch (e) {
      // A discrete action (focus, minimise, ...) is the user's latest intent: on a stale
      // version take the server's window and do it again once.
      if (e instanceof ApiError && e.status === 409 && !retried) {
        const theirs = await api<Win>(`/api/v1/windows/${encodeURIComponent(id)}`);
        this.actor.send({ type: 'SERVER_WINDOW', window: { ...theirs, x: w.x, y: w.y, width: w.width, height: w.height, state: w.state, z_index: w.z_index } });
        return this.action(id, action, true);
      }
      throw e;
    }
  }

  focus(id: string): void {
    const w = this.win(id);
    if (!w) return;
    if (this.ctx.focusStack[0] === id && w.z_index >= Math.max(...Object.values(this.ctx.windows).map((o) => o.z_index))) return;
    this.actor.send({ type: 'FOCUS', id });
    void this.enqueue(id, async () => {
      const changed = await this.action(id, 'focus');
      if (changed?.window) this.actor.send({ type: 'SERVER_WINDOW', window: changed.window, focusStack: changed.focus_stack });
    });
  }

  setState(id: string, state: WindowStateName): void {
    if (!this.win(id)) return;
    this.actor.send({ type: 'SET_STATE', id, state });
    void this.enqueue(id, async () => {
      const changed = await this.action(id, ACTION_PATH[state]);
      if (changed?.window) this.actor.send({ type: 'SERVER_WINDOW', window: changed.window, focusStack: changed.focus_stack });
    });
  }

  close(id: string): void {
    const w = this.win(id);
    if (!w) return;
    clearTimeout(this.dirty.get(id));
    this.dirty.delete(id);
    this.actor.send({ type: 'CLOSE', id });
    void this.enqueue(id, async () => {
      try {
        const closed = await api<ClosedWindow>(`/api/v1/windows/${encodeURIComponent(id)}`, { method: 'DELETE', keepalive: true });
        this.actor.send({ type: 'SERVER_CLOSED', id, focusStack: closed.focus_stack, desktopVersion: closed.desktop_version });
      } catch (e) {
        if (e instanceof ApiError && e.status === 404) return; // already closed elsewhere
        throw e;
      }
    });
  }
}
