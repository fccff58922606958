import { memo } from 'react';
import { Handle, Position, type NodeProps } from '@xyflow/react';
import { nodeDef } from './nodeTypes';
import { useCanvas, type NodeStatus } from './runState';

const STATUS_STYLE: Record<NodeStatus, string> = {
  idle: 'border-slate-400',
  pending: 'border-slate-400',
  running: 'border-sky-500 ring-4 ring-sky-300 animate-pulse',
  succeeded: 'border-emerald-600 ring-4 ring-emerald-300',
  failed: 'border-red-600 ring-4 ring-red-300',
  waiting_approval: 'border-amber-500 ring-4 ring-amber-300',
  skipped: 'border-slate-300 opacity-60',
  cancelled: 'border-slate-500 opacity-70',
};

const STATUS_WORD: Record<NodeStatus, string> = {
  idle: '',
  pending: 'pending',
  running: 'running…',
  succeeded: 'done',
  failed: 'failed',
  waiting_approval: 'waiting for approval',
  skipped: 'skipped',
  cancelled: 'cancelled',
};

function duration(ms: number): string {
  return ms < 1000 ? `${ms} ms` : `${(ms / 1000).toFixed(ms < 10_000 ? 2 : 1)} s`;
}

function FlowNode({ id, type, data, selected }: NodeProps) {
  const def = nodeDef(type ?? '');
  const { live, problems, approve, approving } = useCanvas();
  const state = live[id];
  const status: NodeStatus = state?.status ?? 'idle';
  const mine = problems[id] ?? [];
  const summary = type === 'agent' ? String((data as { agent?: string }).agent || '') : type === 'sql' ? String((data as { query?: string }).query || '') : '';
  return (
    <div
      className={`w-60 rounded-lg border-2 bg-white text-left shadow ${mine.length ? 'border-red-600' : ''} ${STATUS_STYLE[status]} ${selected ? 'outline outline-2 outline-offset-2 outline-indigo-600' : ''}`}
      data-testid={`node-${id}`}
      data-status={status}
      data-type={type}
      aria-label={`${def?.label ?? type} node ${id}${status !== 'idle' ? `, ${STATUS_WORD[status]}` : ''}${state?.durationMs !== undefined ? `, ${duration(state.durationMs)}` : ''}${mine.length ? `, ${mine.length} problem(s)` : ''}`}
    >
      {def?.inputs !== false && <Handle type="target" position={Position.Top} id={null} className="!h-3 !w-3 !bg-slate-600" />}
      <div className={`flex items-center gap-1 rounded-t-md px-2 py-1 text-xs font-semibold text-white ${def?.colour ?? 'bg-slate-600'}`}>
        <span className="flex-1 truncate">{def?.label ?? type}</span>
        <span className="font-mono font-normal">{id}</span>
      </div>
      <div className="space-y-1 px-2 py-1 text-xs text-slate-800">
        {summary && <p className="truncate font-mono" title={summary}>{summary}</p>}
        {status !== 'idle' && (
          <p className="flex items-center justify-between gap-1" data-testid="node-status">
            <span className={status === 'succeeded' ? 'font-semibold text-emerald-800' : status === 'failed' ? 'font-semibold text-red-800' : 'text-slate-800'}>{STATUS_WORD[status]}</span>
            {state?.durationMs !== undefined && (
              <span className="tabular-nums text-slate-800" data-testid="node-duration">
                {duration(state.durationMs)}
              </span>
            )}
          </p>
        )}
        {state?.error && <p className="break-words text-red-800">{state.error}</p>}
        {status === 'waiting_approval' && (
          <div className="space-y-1">
            {state?.message && <p className="text-slate-900">{state.message}</p>}
            <div className="flex gap-1">
              <button type="button" disabled={approving} className="nodrag rounded bg-emerald-700 px-2 py-0.5 font-semibold text-white disabled:opacity-60" onClick={() => approve(id, true)} data-testid="approve">
                Approve
              </button>
              <button type="button" disabled={approving} className="nodrag rounded border border-red-700 px-2 py-0.5 text-red-800 disabled:opacity-60" onClick={() => approve(id, false)} data-testid="reject">
                Reject
              </button>
            </div>
          </div>
        )}
        {mine.length > 0 && (
          <ul className="list-disc pl-4 text-red-800" data-testid="node-problems">
            {mine.map((p, i) => (
              <li key={i}>{p.description}</li>
            ))}
          </ul>
        )}
      </div>
      {def?.outputs !== false && !def?.branches && <Handle type="source" position={Position.Bottom} id={null} className="!h-3 !w-3 !bg-slate-600" />}
      {def?.branches?.map((b, i, all) => (
        <Handle
          key={b}
          type="source"
          id={b}
          position={Position.Bottom}
          className={`!h-3 !w-3 ${i === 0 ? '!bg-emerald-600' : '!bg-red-600'}`}
          title={b}
          // React applies `style` through the CSSOM, which a strict CSP allows.
          style={{ left: `${((i + 1) * 100) / (all.length + 1)}%` }}
        />
      ))}
      {def?.branches && (
        <div className="flex justify-around px-2 pb-1 text-[10px] text-slate-700">
          {def.branches.map((b) => (
            <span key={b}>{b}</span>
          ))}
        </div>
      )}
    </div>
  );
}

export default memo(FlowNode);
