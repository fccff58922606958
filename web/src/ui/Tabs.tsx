import { useRef, type KeyboardEvent, type ReactNode } from 'react';

export interface Tab {
  id: string;
  label: string;
}

/** WAI-ARIA tabs: arrow keys move between tabs, the panel follows. */
export function Tabs({ tabs, active, onChange, label, idPrefix, children }: { tabs: Tab[]; active: string; onChange: (id: string) => void; label: string; idPrefix: string; children: ReactNode }) {
  const refs = useRef<Record<string, HTMLButtonElement | null>>({});
  const onKey = (e: KeyboardEvent) => {
    const i = tabs.findIndex((t) => t.id === active);
    const next = e.key === 'ArrowRight' ? (i + 1) % tabs.length : e.key === 'ArrowLeft' ? (i - 1 + tabs.length) % tabs.length : e.key === 'Home' ? 0 : e.key === 'End' ? tabs.length - 1 : -1;
    if (next < 0) return;
    e.preventDefault();
    onChange(tabs[next].id);
    refs.current[tabs[next].id]?.focus();
  };
  return (
    <div className="flex h-full flex-col">
      <div role="tablist" aria-label={label} className="flex shrink-0 gap-1 overflow-x-auto border-b border-slate-200 bg-slate-50 px-2 pt-2" onKeyDown={onKey}>
        {tabs.map((t) => (
          <button
            key={t.id}
            ref={(el) => (refs.current[t.id] = el)}
            role="tab"
            type="button"
            id={`${idPrefix}-tab-${t.id}`}
            aria-selected={active === t.id}
            aria-controls={`${idPrefix}-panel`}
            tabIndex={active === t.id ? 0 : -1}
            className={`whitespace-nowrap rounded-t-md px-3 py-1.5 text-sm ${active === t.id ? 'border border-b-white border-slate-200 bg-white font-semibold text-slate-900' : 'text-slate-700 hover:text-slate-900'}`}
            onClick={() => onChange(t.id)}
            data-testid={`tab-${t.id}`}
          >
            {t.label}
          </button>
        ))}
      </div>
      <div role="tabpanel" id={`${idPrefix}-panel`} aria-labelledby={`${idPrefix}-tab-${active}`} className="min-h-0 flex-1 overflow-auto p-3" tabIndex={0}>
        {children}
      </div>
    </div>
  );
}

export const input =
  'mt-1 block w-full rounded-md border border-slate-400 bg-white px-2 py-1 text-sm text-slate-900 focus:border-indigo-600 focus:outline-none focus:ring-2 focus:ring-indigo-600';
export const primary =
  'rounded-md bg-indigo-700 px-3 py-1.5 text-sm font-semibold text-white hover:bg-indigo-800 focus:outline-none focus-visible:ring-2 focus-visible:ring-indigo-400 disabled:opacity-60';
export const secondary =
  'rounded-md border border-slate-400 px-3 py-1.5 text-sm text-slate-900 hover:bg-slate-100 focus:outline-none focus-visible:ring-2 focus-visible:ring-indigo-400 disabled:opacity-60';
export const danger =
  'rounded-md border border-red-700 px-2 py-1 text-xs text-red-800 hover:bg-red-50 focus:outline-none focus-visible:ring-2 focus-visible:ring-red-400';

export function ErrorText({ error }: { error: string | null }) {
  if (!error) return null;
  return (
    <p role="alert" className="my-2 rounded bg-red-100 p-2 text-sm text-red-900">
      {error}
    </p>
  );
}
