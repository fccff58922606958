import { useEffect, useState } from 'react';
import type { Edge, Node } from '@xyflow/react';
import type { Violation } from '../../api/types';
import { danger, input, secondary } from '../../ui/Tabs';
import { nodeDef, type FieldDef } from './nodeTypes';

interface Props {
  node: Node;
  nodes: Node[];
  edges: Edge[];
  agents: string[];
  problems: Violation[];
  onChange: (data: Record<string, unknown>) => void;
  onConnect: (target: string, handle?: string) => void;
  onRemoveEdge: (id: string) => void;
  onDelete: () => void;
}

/** The selected node's settings, its outgoing connections (a keyboard way to connect), problems. */
export default function NodeSettings({ node, nodes, edges, agents, problems, onChange, onConnect, onRemoveEdge, onDelete }: Props) {
  const def = nodeDef(node.type ?? '');
  const data = (node.data ?? {}) as Record<string, unknown>;
  const [target, setTarget] = useState('');
  const [handle, setHandle] = useState(def?.branches?.[0] ?? '');
  useEffect(() => {
    setTarget('');
    setHandle(def?.branches?.[0] ?? '');
  }, [node.id, def]);
  const outgoing = edges.filter((e) => e.source === node.id);
  const candidates = nodes.filter((n) => n.id !== node.id && nodeDef(n.type ?? '')?.inputs !== false);

  return (
    <div className="space-y-3 text-sm" data-testid="node-settings">
      <h2 className="font-semibold">
        {def?.label ?? node.type} <span className="font-mono text-xs text-slate-600">{node.id}</span>
      </h2>
      {problems.length > 0 && (
        <ul className="list-disc rounded bg-red-50 p-2 pl-5 text-xs text-red-900" aria-label="Problems of this node">
          {problems.map((p, i) => (
            <li key={i}>
              <span className="font-mono">{p.field}</span>: {p.description}
            </li>
          ))}
        </ul>
      )}
      {def?.fields.map((f) => (
        <Field key={`${node.id}-${f.key}`} nodeId={node.id} field={f} value={data[f.key]} agents={agents} onChange={(v) => onChange(setKey(data, f.key, v))} />
      ))}
      {def?.outputs !== false && (
        <fieldset className="space-y-1 rounded border border-slate-200 p-2">
          <legend className="px-1 text-xs font-semibold">Connections</legend>
          <ul className="space-y-1 text-xs">
            {outgoing.map((e) => (
              <li key={e.id} className="flex items-center gap-1">
                <span className="flex-1">
                  → {e.target}
                  {e.sourceHandle ? ` (${e.sourceHandle})` : ''}
                </span>
                <button type="button" className={danger} onClick={() => onRemoveEdge(e.id)} aria-label={`Remove the connection to ${e.target}`}>
                  Remove
                </button>
              </li>
            ))}
          </ul>
          <div className="flex flex-wrap items-end gap-1">
            <label className="text-xs">
              Connect to
              <select className={input} value={target} onChange={(e) => setTarget(e.target.value)} data-testid="connect-target">
                <option value="">choose a node</option>
                {candidates.map((n) => (
                  <option key={n.id} value={n.id}>
                    {n.id}
                  </option>
                ))}
              </select>
            </label>
            {def?.branches && (
              <label className="text-xs">
                Output
                <select className={input} value={handle} onChange={(e) => setHandle(e.target.value)} data-testid="connect-handle">
                  {def.branches.map((b) => (
                    <option key={b}>{b}</option>
                  ))}
                </select>
              </label>
            )}
            <button type="button" className={secondary} disabled={!target} onClick={() => onConnect(target, def?.branches ? handle : undefined)} data-testid="connect-add">
              Connect
            </button>
          </div>
        </fieldset>
      )}
      <button type="button" className={danger} onClick={onDelete} data-testid="node-delete">
        Delete node
      </button>
    </div>
  );
}

function setKey(data: Record<string, unknown>, key: string, value: unknown): Record<string, unknown> {
  const next = { ...data };
  if (value === undefined) delete next[key];
  else next[key] = value;
  return next;
}

function Field({ nodeId, field, value, agents, onChange }: { nodeId: string; field: FieldDef; value: unknown; agents: string[]; onChange: (v: unknown) => void }) {
  const id = `f-${nodeId}-${field.key}`;
  const [text, setText] = useState(() => (field.kind === 'json' ? (value === undefined ? '' : JSON.stringify(value, null, 1)) : value === undefined ? '' : String(value)));
  const [bad, setBad] = useState<string | null>(null);
  const commit = (t: string) => {
    setText(t);
    if (field.kind === 'number') {
      if (t.trim() === '') return onChange(undefined);
      const n = Number(t);
      if (Number.isFinite(n)) onChange(n);
    } else if (field.kind === 'json') {
      if (t.trim() === '') {
        setBad(null);
        return onChange(undefined);
      }
      try {
        onChange(JSON.parse(t));
        setBad(null);
      } catch {
        setBad('not valid JSON yet');
      }
    } else onChange(t);
  };
  const listId = field.key === 'agent' ? `${id}-agents` : undefined;
  return (
    <div>
      <label htmlFor={id} className="block text-xs font-medium text-slate-800">
        {field.label}
      </label>
      {field.kind === 'textarea' || field.kind === 'json' ? (
        <textarea id={id} rows={field.kind === 'json' ? 3 : 3} className={`${input} font-mono`} value={text} onChange={(e) => commit(e.target.value)} aria-invalid={!!bad} aria-describedby={bad ? `${id}-err` : undefined} data-testid={`field-${field.key}`} />
      ) : (
        <input id={id} className={input} type={field.kind === 'number' ? 'number' : 'text'} value={text} onChange={(e) => commit(e.target.value)} list={listId} data-testid={`field-${field.key}`} />
      )}
      {listId && (
        <datalist id={listId}>
          {agents.map((a) => (
            <option key={a} value={a} />
          ))}
        </datalist>
      )}
      {bad && (
        <p id={`${id}-err`} className="text-xs text-red-800">
          {bad}
        </p>
      )}
    </div>
  );
}
