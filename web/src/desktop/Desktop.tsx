import { useEffect, useMemo, useState } from 'react';
import { useActorRef, useSelector } from '@xstate/react';
import { useAtomValue, useSetAtom } from 'jotai';
import { desktopSystemMachine, stacked } from './machine';
import { DesktopBridge } from './bridge';
import { BridgeContext } from './context';
import { APPS, appFor } from './apps';
import WindowFrame from './WindowFrame';
import { useNarrow } from './useNarrow';
import { sessionAtom } from '../auth/session';

const launcherBtn =
  'rounded-md px-3 py-2 text-sm font-medium text-white hover:bg-slate-700 focus:outline-none focus-visible:ring-2 focus-visible:ring-sky-300';

/** Keyboard focus to a window's title once it is on screen (after a launcher opened it). */
function focusWindow(id: string) {
  requestAnimationFrame(() => document.querySelector<HTMLElement>(`[data-window-id="${CSS.escape(id)}"] [data-testid="window-title"]`)?.focus());
}

export default function Desktop() {
  const session = useAtomValue(sessionAtom)!;
  const setSession = useSetAtom(sessionAtom);
  const actor = useActorRef(desktopSystemMachine, { input: { desktopId: '' } });
  const bridge = useMemo(() => new DesktopBridge(actor, `${session.user.tenant}-${session.user.id}`), [actor, session.user.tenant, session.user.id]);
  const [socket, setSocket] = useState<'connecting' | 'open' | 'closed'>('connecting');
  const narrow = useNarrow();

  useEffect(() => {
    bridge.onSocket = setSocket;
    return bridge.start();
  }, [bridge]);

  const phase = useSelector(actor, (s) => (s.matches('ready') ? 'ready' : s.matches('failed') ? 'failed' : 'loading'));
  const ctx = useSelector(actor, (s) => s.context);
  const windows = stacked(ctx);
  const visible = windows.filter((w) => w.state !== 'minimized');
  const focusedId = ctx.focusStack.find((id) => ctx.windows[id]?.state !== 'minimized');
  // On a narrow screen only the focused window is shown, full screen.
  const shown = narrow ? visible.filter((w) => w.id === (focusedId ?? visible[visible.length - 1]?.id)) : visible;

  return (
    <BridgeContext.Provider value={bridge}>
      <div className="flex h-full flex-col bg-gradient-to-br from-slate-800 via-slate-900 to-indigo-950">
        <header className="sr-only">
          <h1>GETLOOD desktop</h1>
        </header>
        <main className="relative min-h-0 flex-1 overflow-hidden" aria-label="Desktop" data-testid="desktop" data-desktop-id={ctx.desktopId}>
          {phase === 'loading' && <p className="p-6 text-slate-200">Restoring your desktop…</p>}
          {phase === 'failed' && (
            <p role="alert" className="m-6 rounded bg-red-100 p-3 text-red-900">
              The desktop could not be loaded: {ctx.error}
            </p>
          )}
          {phase === 'ready' && windows.length === 0 && (
            <div className="flex h-full items-center justify-center p-6 text-center text-slate-300">
              <p>Open an app from the taskbar, or ask the chat for one.</p>
            </div>
          )}
          {shown.map((w) => (
            <WindowFrame key={w.id} win={w} bridge={bridge} focused={w.id === focusedId} narrow={narrow} />
          ))}
          {ctx.conflict && (
            <div role="alertdialog" aria-modal="true" aria-labelledby="conflict-title" aria-describedby="conflict-desc" className="absolute inset-x-0 top-4 z-[100000] mx-auto w-[min(32rem,calc(100%-2rem))] rounded-lg bg-white p-4 shadow-2xl" data-testid="conflict">
              <h2 id="conflict-title" className="font-semibold text-slate-900">
                “{ctx.conflict.mine.title}” was changed elsewhere
              </h2>
              <p id="conflict-desc" className="mt-1 text-sm text-slate-700">
                Another tab or device moved or resized this window while you did. Yours: {ctx.conflict.mine.x},{ctx.conflict.mine.y} {ctx.conflict.mine.width}×{ctx.conflict.mine.height}; theirs: {ctx.conflict.theirs.x},{ctx.conflict.theirs.y} {ctx.conflict.theirs.width}×{ctx.conflict.theirs.height}.
              </p>
              <div className="mt-3 flex gap-2">
                <button autoFocus type="button" className="rounded bg-indigo-700 px-3 py-1.5 text-sm font-semibold text-white" onClick={() => void bridge.resolveConflict('mine')} data-testid="conflict-keep-mine">
                  Keep mine
                </button>
                <button type="button" className="rounded border border-slate-400 px-3 py-1.5 text-sm text-slate-900" onClick={() => void bridge.resolveConflict('theirs')} data-testid="conflict-take-theirs">
                  Use theirs
                </button>
              </div>
            </div>
          )}
          {ctx.error && phase === 'ready' && (
            <div role="alert" className="absolute bottom-3 right-3 z-[100000] flex max-w-md items-start gap-2 rounded bg-red-100 p-3 text-sm text-red-900 shadow-lg">
              <span className="flex-1">{ctx.error}</span>
              <button type="button" className="rounded px-1 font-semibold" aria-label="Dismiss" onClick={() => actor.send({ type: 'DISMISS_ERROR' })}>
                ×
              </button>
            </div>
          )}
        </main>
        <nav aria-label="Taskbar" className="flex h-14 shrink-0 items-center gap-1 overflow-x-auto border-t border-slate-700 bg-slate-900/95 px-2">
          <span className="mr-1 hidden font-bold text-white sm:inline">GETLOOD</span>
          <ul className="flex gap-1" aria-label="Apps">
            {APPS.map((a) => (
              <li key={a.id}>
                <button type="button" className={launcherBtn} disabled={phase !== 'ready'} onClick={() => void bridge.open(a.id, a).then((id) => id && focusWindow(id))} data-testid={a.testId}>
                  {a.launcher}
                </button>
              </li>
            ))}
          </ul>
          <ul className="ml-2 flex min-w-0 gap-1 border-l border-slate-700 pl-2" aria-label="Open windows">
            {windows.map((w) => (
              <li key={w.id}>
                <button
                  type="button"
                  aria-pressed={w.id === focusedId}
                  className={`max-w-[10rem] truncate rounded px-2 py-1 text-xs ${w.id === focusedId ? 'bg-sky-700 text-white' : 'bg-slate-700 text-slate-100'} focus:outline-none focus-visible:ring-2 focus-visible:ring-sky-300`}
                  onClick={() => {
                    if (w.state === 'minimized') bridge.setState(w.id, 'normal');
                    bridge.focus(w.id);
                    focusWindow(w.id);
                  }}
                  data-testid={`task-${w.app_id}`}
                >
                  {w.title || appFor(w.app_id)?.title || w.app_id}
                  {w.state === 'minimized' ? ' (minimised)' : ''}
                </button>
              </li>
            ))}
          </ul>
          <div className="ml-auto flex items-center gap-2 pl-2 text-xs text-slate-300">
            <span role="status" aria-label={`Live sync ${socket}`} title={`Live sync: ${socket}`} data-testid="sync-status" data-state={socket} className={`inline-block h-2.5 w-2.5 rounded-full ${socket === 'open' ? 'bg-emerald-400' : socket === 'connecting' ? 'bg-amber-400' : 'bg-red-500'}`} />
            <span className="hidden md:inline">
              {session.user.email ?? session.user.id} · {session.user.tenant}
            </span>
            <button type="button" className="rounded border border-slate-600 px-2 py-1 text-slate-100 hover:bg-slate-700" onClick={() => setSession(null)} data-testid="sign-out">
              Sign out
            </button>
          </div>
        </nav>
      </div>
    </BridgeContext.Provider>
  );
}
