import { Suspense, useRef, type KeyboardEvent, type PointerEvent as ReactPointerEvent } from 'react';
import type { Win } from '../api/types';
import { appFor } from './apps';
import type { DesktopBridge } from './bridge';

interface Props {
  win: Win;
  bridge: DesktopBridge;
  focused: boolean;
  narrow: boolean;
}

const STEP = 16;

const btn =
  'inline-flex h-7 w-7 items-center justify-center rounded text-slate-100 hover:bg-slate-600 focus:outline-none focus-visible:ring-2 focus-visible:ring-sky-300';

/** One window: title bar (drag, or arrow keys; Shift+arrows resize), controls, resize grip. */
export default function WindowFrame({ win, bridge, focused, narrow }: Props) {
  const app = appFor(win.app_id);
  const drag = useRef<{ kind: 'move' | 'resize'; px: number; py: number; x: number; y: number; w: number; h: number } | null>(null);
  const maximized = win.state === 'maximized' || narrow;
  const titleId = `win-title-${win.id}`;

  const startDrag = (kind: 'move' | 'resize') => (e: ReactPointerEvent<HTMLElement>) => {
    if (e.button !== 0 || maximized) return;
    if ((e.target as HTMLElement).closest('button') && kind === 'move') return;
    e.preventDefault();
    (e.currentTarget as HTMLElement).setPointerCapture(e.pointerId);
    drag.current = { kind, px: e.clientX, py: e.clientY, x: win.x, y: win.y, w: win.width, h: win.height };
    bridge.focus(win.id);
  };
  const onDrag = (e: ReactPointerEvent<HTMLElement>) => {
    const d = drag.current;
    if (!d) return;
    const dx = e.clientX - d.px;
    const dy = e.clientY - d.py;
    if (d.kind === 'move') bridge.move(win.id, d.x + dx, d.y + dy);
    else bridge.resize(win.id, d.w + dx, d.h + dy);
  };
  const endDrag = () => {
    drag.current = null;
  };

  const onTitleKey = (e: KeyboardEvent<HTMLDivElement>) => {
    const k = e.key;
    const d = { ArrowLeft: [-STEP, 0], ArrowRight: [STEP, 0], ArrowUp: [0, -STEP], ArrowDown: [0, STEP] }[k as 'ArrowLeft'];
    if (!d || maximized) return;
    e.preventDefault();
    if (e.shiftKey) bridge.resize(win.id, win.width + d[0], win.height + d[1]);
    else bridge.move(win.id, win.x + d[0], win.y + d[1]);
  };

  const App = app?.component;
  const frameClass = maximized
    ? 'absolute inset-0'
    : 'absolute';
  return (
    <section
      role="dialog"
      aria-modal="false"
      aria-labelledby={titleId}
      data-testid={`window-${win.app_id}`}
      data-window-id={win.id}
      data-version={win.version}
      className={`${frameClass} flex flex-col overflow-hidden rounded-lg border bg-white shadow-2xl ${focused ? 'border-sky-400 ring-2 ring-sky-400/40' : 'border-slate-500'}`}
      ref={(el) => {
        if (!el) return;
        // Geometry through the CSSOM (not a style attribute), which a strict CSP allows.
        el.style.zIndex = String(win.z_index);
        if (maximized) {
          el.style.left = el.style.top = el.style.width = el.style.height = '';
        } else {
          el.style.left = `${win.x}px`;
          el.style.top = `${win.y}px`;
          el.style.width = `${win.width}px`;
          el.style.height = `${win.height}px`;
        }
      }}
      onPointerDownCapture={() => bridge.focus(win.id)}
      onFocusCapture={() => bridge.focus(win.id)}
    >
      <div
        className={`flex h-9 shrink-0 select-none items-center gap-2 px-2 ${focused ? 'bg-slate-800' : 'bg-slate-700'} ${maximized ? '' : 'cursor-move'} touch-none`}
        onPointerDown={startDrag('move')}
        onPointerMove={onDrag}
        onPointerUp={endDrag}
        onPointerCancel={endDrag}
        onDoubleClick={() => !narrow && bridge.setState(win.id, win.state === 'maximized' ? 'normal' : 'maximized')}
      >
        <div
          tabIndex={0}
          role="button"
          aria-roledescription="movable window title"
          aria-describedby={`${titleId}-help`}
          onKeyDown={onTitleKey}
          className="min-w-0 flex-1 truncate rounded px-1 text-sm font-semibold text-white focus:outline-none focus-visible:ring-2 focus-visible:ring-sky-300"
          id={titleId}
          data-testid="window-title"
        >
          {win.title || app?.title || win.app_id}
        </div>
        <span id={`${titleId}-help`} className="sr-only">
          Arrow keys move the window; Shift and arrow keys resize it.
        </span>
        <button type="button" className={btn} aria-label={`Minimise ${win.title}`} onClick={() => bridge.setState(win.id, 'minimized')} data-testid="window-minimise">
          <span aria-hidden="true">–</span>
        </button>
        {!narrow && (
          <button
            type="button"
            className={btn}
            aria-label={win.state === 'maximized' ? `Restore ${win.title}` : `Maximise ${win.title}`}
            onClick={() => bridge.setState(win.id, win.state === 'maximized' ? 'normal' : 'maximized')}
            data-testid="window-maximise"
          >
            <span aria-hidden="true">{win.state === 'maximized' ? '❐' : '□'}</span>
          </button>
        )}
        <button type="button" className={`${btn} hover:bg-red-600`} aria-label={`Close ${win.title}`} onClick={() => bridge.close(win.id)} data-testid="window-close">
          <span aria-hidden="true">×</span>
        </button>
      </div>
      <div className="relative min-h-0 flex-1 overflow-auto bg-white text-slate-900">
        {App ? (
          <Suspense fallback={<p className="p-4 text-slate-700">Loading {app.title}…</p>}>
            <App window={win} />
          </Suspense>
        ) : (
          <p className="p-4 text-slate-700">No app named “{win.app_id}” on this desktop.</p>
        )}
      </div>
      {!maximized && (
        <div
          aria-hidden="true"
          className="absolute bottom-0 right-0 h-4 w-4 cursor-se-resize touch-none bg-[linear-gradient(135deg,transparent_50%,#64748b_50%)]"
          onPointerDown={startDrag('resize')}
          onPointerMove={onDrag}
          onPointerUp={endDrag}
          onPointerCancel={endDrag}
          data-testid="window-resize"
        />
      )}
    </section>
  );
}
