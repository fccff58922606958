// The workflow editor (its own chunk with React Flow): the engine's node palette, validation
// problems on the nodes, versions, runs with nodes lighting up from the run's events.
import '@xyflow/react/dist/style.css';
import { useCallback, useEffect, useMemo, useRef, useState } from 'react';
import {
  addEdge,
  Background,
  Controls,
  MiniMap,
  ReactFlow,
  ReactFlowProvider,
  useEdgesState,
  useNodesState,
  useReactFlow,
  type Connection,
  type Edge,
  type Node,
} from '@xyflow/react';
import { api, ApiError, describe, raw } from '../../api/client';
import { readSse } from '../../api/sse';
import type { AgentList, EventJson, Run, RunList, Validation, Violation, Workflow, WorkflowList, WorkflowVersion } from '../../api/types';
import type { AppProps } from '../../desktop/apps';
import { ErrorText, input, primary, secondary } from '../../ui/Tabs';
import FlowNode from './FlowNode';
import { edgeId, freshId, fromGraph, toGraphInput } from './graph';
import { NODE_TYPES, nodeDef } from './nodeTypes';
import { CanvasContext, type NodeLive, type NodeStatus } from './runState';
import NodeSettings from './NodeSettings';

const nodeTypes = Object.fromEntries(NODE_TYPES.map((d) => [d.type, FlowNode]));
const TERMINAL = new Set(['succeeded', 'failed', 'cancelled']);
const RUN_END: Record<string, string> = { 'run.completed': 'succeeded', 'run.failed': 'failed', 'run.cancelled': 'cancelled' };

interface Current {
  id: string | null;
  name: string;
  description: string;
  version: number;
}

export default function WorkflowApp(_: AppProps) {
  return (
    <ReactFlowProvider>
      <Editor />
    </ReactFlowProvider>
  );
}

function Editor() {
  const rf = useReactFlow();
  const [nodes, setNodes, onNodesChange] = useNodesState<Node>([]);
  const [edges, setEdges, onEdgesChange] = useEdgesState<Edge>([]);
  const [current, setCurrent] = useState<Current>({ id: null, name: 'analytics_report', description: '', version: 0 });
  const [dirty, setDirty] = useState(false);
  const [workflows, setWorkflows] = useState<Workflow[]>([]);
  const [versions, setVersions] = useState<WorkflowVersion[]>([]);
  const [runs, setRuns] = useState<Run[]>([]);
  const [problems, setProblems] = useState<Violation[]>([]);
  const [valid, setValid] = useState<boolean | null>(null);
  const [selected, setSelected] = useState<string | null>(null);
  const [run, setRun] = useState<Run | null>(null);
  const [live, setLive] = useState<Record<string, NodeLive>>({});
  const [approving, setApproving] = useState(false);
  const [busy, setBusy] = useState<string | null>(null);
  const [error, setError] = useState<string | null>(null);
  const [note, setNote] = useState<string | null>(null);
  const [agents, setAgents] = useState<string[]>([]);
  const follow = useRef<AbortController | null>(null);

  const loadLists = useCallback(async (id: string | null) => {
    try {
      const list = await api<WorkflowList>('/api/v1/workflows?page_size=100&omit_graph=true');
      setWorkflows(list.workflows);
      if (id) {
        const [v, r] = await Promise.all([
          api<{ versions: WorkflowVersion[] }>(`/api/v1/workflows/${id}/versions`),
          api<RunList>(`/api/v1/workflows/${id}/runs?page_size=20`),
        ]);
        setVersions(v.versions);
        setRuns(r.runs);
      } else {
        setVersions([]);
        setRuns([]);
      }
    } catch (e) {
      setError(describe(e));
    }
  }, []);

  useEffect(() => {
    void loadLists(null);
    api<AgentList>('/api/v1/agents?page_size=100')
      .then((a) => setAgents(a.agents.map((x) => x.name)))
      .catch(() => undefined);
    return () => follow.current?.abort();
  }, [loadLists]);

  // Validation as the graph changes: the engine's own check, problems shown on their nodes.
  const graphKey = useMemo(() => JSON.stringify(toGraphInput(nodes, edges)), [nodes, edges]);
  useEffect(() => {
    if (nodes.length === 0) {
      setProblems([]);
      setValid(null);
      return;
    }
    const ctl = new AbortController();
    const t = setTimeout(async () => {
      try {
        const v = await api<Validation>('/api/v1/workflows/validate', { body: { graph: JSON.parse(graphKey) }, signal: ctl.signal });
        setProblems(v.problems);
        setValid(v.valid);
      } catch (e) {
        if (!ctl.signal.aborted) setError(describe(e));
      }
    }, 400);
    return () => {
      clearTimeout(t);
      ctl.abort();
    };
    // positions alone don't change validity, but are cheap to re-check
  }, [graphKey, nodes.length]);

  const problemsBy = useMemo(() => {
    const m: Record<string, Violation[]> = {};
    problems.forEach((p) => (m[p.subject] ??= []).push(p));
    return m;
  }, [problems]);

  const markDirty = () => setDirty(true);

  const addNode = (type: string) => {
    const def = nodeDef(type)!;
    const id = freshId(type, nodes);
    const last = nodes[nodes.length - 1];
    const position = last ? { x: last.position.x, y: last.position.y + 130 } : { x: 80, y: 20 };
    setNodes((ns) => [...ns, { id, type, position, data: structuredClone(def.defaults), selected: true }].map((n) => ({ ...n, selected: n.id === id })));
    setSelected(id);
    markDirty();
  };

  const connect = (c: Connection) => {
    setEdges((es) => addEdge({ ...c, id: edgeId(c.source, c.target, c.sourceHandle), label: c.sourceHandle ?? undefined }, es));
    markDirty();
  };

  const resetLive = () => {
    follow.current?.abort();
    setRun(null);
    setLive({});
  };

  const newWorkflow = () => {
    resetLive();
    setCurrent({ id: null, name: `workflow_${Date.now().toString(36)}`, description: '', version: 0 });
    setNodes([]);
    setEdges([]);
    setDirty(false);
    setSelected(null);
    void loadLists(null);
  };

  const open = async (id: string, version?: number) => {
    try {
      resetLive();
      const wf = await api<Workflow>(`/api/v1/workflows/${id}${version ? `?version=${version}` : ''}`);
      const g = fromGraph(wf.graph);
      setNodes(g.nodes);
      setEdges(g.edges);
      // An older version loaded is edited on top of the newest: saving it makes a new version.
      const latest = version ? (workflows.find((w) => w.id === id)?.version ?? wf.version) : wf.version;
      setCurrent({ id: wf.id, name: wf.name, description: wf.description, version: latest });
      setDirty(!!version);
      setSelected(null);
      if (g.viewport) void rf.setViewport(g.viewport);
      else setTimeout(() => void rf.fitView({ padding: 0.2 }), 0);
      await loadLists(wf.id);
      setNote(version ? `Version ${version} loaded: saving makes it the newest version.` : null);
    } catch (e) {
      setError(describe(e));
    }
  };

  /** Saves the graph as a new version; returns the workflow. */
  const save = async (comment = ''): Promise<Workflow | null> => {
    setBusy('save');
    setError(null);
    try {
      const graph = toGraphInput(nodes, edges, rf.getViewport());
      let wf: Workflow;
      if (!current.id) {
        wf = await api<Workflow>('/api/v1/workflows', { body: { name: current.name, description: current.description, graph, version_comment: comment } });
      } else {
        wf = await api<Workflow>(`/api/v1/workflows/${current.id}`, {
          method: 'PUT',
          body: { name: current.name, description: current.description, graph, version_comment: comment, expected_version: current.version },
        });
      }
      setCurrent({ id: wf.id, name: wf.name, description: wf.description, version: wf.version });
      setDirty(false);
      setNote(`Saved as version ${wf.version}.`);
      await loadLists(wf.id);
      return wf;
    } catch (e) {
      if (e instanceof ApiError && e.status === 409)
        setError(`Someone saved this workflow since you opened version ${current.version}. Open the newest version to see it, or save again to make yours the newest.`);
      else setError(describe(e));
      if (e instanceof ApiError && e.status === 409) setCurrent((c) => ({ ...c, version: 0 }));
      return null;
    } finally {
      setBusy(null);
    }
  };

  const applyEvent = useCallback((e: EventJson) => {
    const d = (e.data ?? {}) as Record<string, unknown>;
    const node = String(d.node_id ?? '');
    const set = (patch: Partial<NodeLive>) => setLive((l) => ({ ...l, [node]: { ...(l[node] ?? { status: 'pending' }), ...patch } }));
    switch (e.type) {
      case 'node.started':
        set({ status: 'running', error: undefined, attempt: Number(d.attempt ?? 1), durationMs: undefined });
        break;
      case 'node.completed':
        set({ status: 'succeeded', durationMs: Number(d.duration_ms ?? 0), error: undefined });
        break;
      case 'node.failed':
        set({ status: d.will_retry ? 'running' : 'failed', durationMs: Number(d.duration_ms ?? 0), error: String(d.error ?? '') + (d.will_retry ? ' (retrying)' : '') });
        break;
      case 'run.waiting_approval':
        set({ status: 'waiting_approval', message: String(d.message ?? '') });
        setRun((r) => (r ? { ...r, status: 'waiting_approval' } : r));
        break;
      case 'run.started':
        setRun((r) => (r ? { ...r, status: 'running' } : r));
        break;
      case 'run.completed':
      case 'run.failed':
      case 'run.cancelled':
        setRun((r) => (r ? { ...r, status: RUN_END[e.type], duration_ms: Number(d.duration_ms ?? r.duration_ms) } : r));
        break;
    }
  }, []);

  /** Shows a run: its node timeline now, then its events live until it ends. */
  const watch = useCallback(
    async (runId: string) => {
      follow.current?.abort();
      const ctl = new AbortController();
      follow.current = ctl;
      let workflowId: string | null = null;
      try {
        const r = await api<Run>(`/api/v1/workflows/runs/${runId}`);
        workflowId = r.workflow_id;
        setRun(r);
        const l: Record<string, NodeLive> = {};
        r.node_runs.forEach((n) => {
          l[n.node_id] = { status: (n.status as NodeStatus) || 'pending', durationMs: n.status === 'succeeded' || n.status === 'failed' ? n.duration_ms : undefined, error: n.error || undefined, attempt: n.attempt };
        });
        setLive(l);
        if (TERMINAL.has(r.status)) return;
        // From the run's first event: replays what happened before, none twice.
        const res = await raw(`/api/v1/workflows/runs/${runId}/events`, { headers: { accept: 'text/event-stream' }, signal: ctl.signal });
        await readSse(
          res,
          (m) => {
            if (!m.data) return;
            try {
              const ev = JSON.parse(m.data) as EventJson;
              if (ev.type) applyEvent(ev);
              if (RUN_END[ev.type]) ctl.abort();
            } catch {
              /* keep-alive or a frame we don't know */
            }
          },
          ctl.signal,
        );
      } catch (e) {
        if (!ctl.signal.aborted) setError(describe(e));
      } finally {
        if (follow.current === ctl && workflowId) void loadLists(workflowId);
      }
    },
    [applyEvent, loadLists],
  );

  const execute = async () => {
    setError(null);
    const wf = dirty || !current.id ? await save('saved to run') : { id: current.id, version: current.version };
    if (!wf) return;
    setBusy('run');
    try {
      resetLive();
      const r = await api<Run>(`/api/v1/workflows/${wf.id}/execute`, { body: { input: {}, request_id: crypto.randomUUID() } });
      setRun(r);
      setLive(Object.fromEntries(nodes.map((n) => [n.id, { status: 'pending' as NodeStatus }])));
      setNote(`Run ${r.id.slice(0, 8)} started.`);
      void watch(r.id);
      void loadLists(wf.id);
    } catch (e) {
      setError(describe(e));
    } finally {
      setBusy(null);
    }
  };

  const approve = useCallback(
    async (nodeId: string, approved: boolean) => {
      if (!run) return;
      setApproving(true);
      try {
        await api(`/api/v1/workflows/runs/${run.id}/approve`, { body: { node_id: nodeId, approved, comment: approved ? 'approved in the editor' : 'rejected in the editor' } });
        setLive((l) => ({ ...l, [nodeId]: { ...l[nodeId], status: 'running', message: undefined } }));
        if (follow.current?.signal.aborted !== false) void watch(run.id);
      } catch (e) {
        setError(describe(e));
      } finally {
        setApproving(false);
      }
    },
    [run, watch],
  );

  const cancel = async () => {
    if (!run) return;
    try {
      await api(`/api/v1/workflows/runs/${run.id}/cancel`, { body: { reason: 'cancelled in the editor' } });
    } catch (e) {
      setError(describe(e));
    }
  };

  const canvas = useMemo(() => ({ live, problems: problemsBy, approve: (id: string, ok: boolean) => void approve(id, ok), approving }), [live, problemsBy, approve, approving]);
  const selectedNode = nodes.find((n) => n.id === selected) ?? null;
  const unplaced = problems.filter((p) => !nodes.some((n) => n.id === p.subject));

  return (
    <div className="flex h-full min-h-0 flex-col md:flex-row" data-testid="workflow-editor">
      <aside className="flex max-h-48 shrink-0 flex-col gap-3 overflow-y-auto border-b border-slate-200 bg-slate-50 p-2 md:max-h-none md:w-56 md:border-b-0 md:border-r" aria-label="Workflows, versions and runs">
        <section aria-labelledby="wf-list-h">
          <div className="flex items-center justify-between">
            <h2 id="wf-list-h" className="text-sm font-semibold">Workflows</h2>
            <button type="button" className="text-xs text-indigo-800 underline" onClick={newWorkflow} data-testid="wf-new">
              New
            </button>
          </div>
          <ul className="mt-1 space-y-0.5 text-sm">
            {workflows.map((w) => (
              <li key={w.id}>
                <button type="button" className={`w-full truncate rounded px-1 text-left ${w.id === current.id ? 'bg-indigo-100 font-semibold' : 'hover:bg-slate-200'}`} aria-current={w.id === current.id} onClick={() => void open(w.id)}>
                  {w.name} <span className="text-xs text-slate-600">v{w.version}</span>
                </button>
              </li>
            ))}
            {workflows.length === 0 && <li className="text-xs text-slate-600">None yet.</li>}
          </ul>
        </section>
        {current.id && (
          <section aria-labelledby="wf-versions-h">
            <h2 id="wf-versions-h" className="text-sm font-semibold">Versions</h2>
            <ul className="mt-1 space-y-0.5 text-xs" data-testid="wf-versions">
              {versions.map((v) => (
                <li key={v.version}>
                  <button type="button" className="w-full truncate rounded px-1 text-left hover:bg-slate-200" onClick={() => void open(v.workflow_id, v.version)}>
                    v{v.version} · {v.node_count} nodes {v.comment ? `· ${v.comment}` : ''}
                  </button>
                </li>
              ))}
            </ul>
          </section>
        )}
        {current.id && (
          <section aria-labelledby="wf-runs-h">
            <h2 id="wf-runs-h" className="text-sm font-semibold">Run history</h2>
            <ul className="mt-1 space-y-0.5 text-xs" data-testid="wf-runs">
              {runs.map((r) => (
                <li key={r.id}>
                  <button type="button" className={`w-full truncate rounded px-1 text-left hover:bg-slate-200 ${run?.id === r.id ? 'bg-indigo-100' : ''}`} onClick={() => void watch(r.id)}>
                    {r.created_at ? new Date(r.created_at).toLocaleTimeString() : r.id.slice(0, 8)} · {r.status}
                    {TERMINAL.has(r.status) ? ` · ${(r.duration_ms / 1000).toFixed(1)} s` : ''}
                  </button>
                </li>
              ))}
              {runs.length === 0 && <li className="text-slate-600">No runs yet.</li>}
            </ul>
          </section>
        )}
      </aside>
      <div className="flex min-h-0 min-w-0 flex-1 flex-col">
        <div className="flex flex-wrap items-end gap-2 border-b border-slate-200 p-2">
          <label className="text-xs">
            Name
            <input className={`${input} w-44`} value={current.name} onChange={(e) => (setCurrent({ ...current, name: e.target.value }), markDirty())} data-testid="wf-name" />
          </label>
          <button type="button" className={secondary} disabled={busy !== null || nodes.length === 0} onClick={() => void save()} data-testid="wf-save">
            {busy === 'save' ? 'Saving…' : current.id ? `Save as v${current.version + 1}` : 'Save'}
          </button>
          <button type="button" className={primary} disabled={busy !== null || nodes.length === 0 || valid === false} onClick={() => void execute()} data-testid="wf-run">
            {busy === 'run' ? 'Starting…' : 'Run'}
          </button>
          {run && !TERMINAL.has(run.status) && (
            <button type="button" className={secondary} onClick={() => void cancel()} data-testid="wf-cancel">
              Cancel run
            </button>
          )}
          <p className="text-xs text-slate-700" role="status" data-testid="wf-status">
            {current.id ? `v${current.version}${dirty ? ' (unsaved changes)' : ''}` : 'not saved'}
            {valid === true && ' · valid'}
            {valid === false && ` · ${problems.length} problem(s)`}
            {run && ` · run ${run.status}`}
          </p>
        </div>
        <div className="flex flex-wrap gap-1 border-b border-slate-200 p-2" role="toolbar" aria-label="Add a node">
          {NODE_TYPES.map((d) => (
            <button key={d.type} type="button" className={`rounded px-2 py-0.5 text-xs font-medium text-white ${d.colour} focus:outline-none focus-visible:ring-2 focus-visible:ring-sky-400`} onClick={() => addNode(d.type)} data-testid={`palette-${d.type}`}>
              + {d.label}
            </button>
          ))}
        </div>
        <ErrorText error={error} />
        {note && !error && (
          <p role="status" className="mx-2 mt-1 text-xs text-emerald-800">
            {note}
          </p>
        )}
        {unplaced.length > 0 && (
          <ul className="mx-2 mt-1 list-disc pl-4 text-xs text-red-800" aria-label="Problems of the graph">
            {unplaced.map((p, i) => (
              <li key={i}>
                {p.subject ? `${p.subject}: ` : ''}
                {p.description}
              </li>
            ))}
          </ul>
        )}
        <div className="min-h-[16rem] flex-1" data-testid="wf-canvas">
          <CanvasContext.Provider value={canvas}>
            <ReactFlow
              nodes={nodes}
              edges={edges}
              nodeTypes={nodeTypes}
              onNodesChange={(c) => {
                onNodesChange(c);
                if (c.some((x) => x.type !== 'select' && x.type !== 'dimensions')) markDirty();
              }}
              onEdgesChange={(c) => {
                onEdgesChange(c);
                if (c.some((x) => x.type !== 'select')) markDirty();
              }}
              onConnect={connect}
              onSelectionChange={({ nodes: sel }) => setSelected(sel[0]?.id ?? null)}
              fitView
              deleteKeyCode={['Delete', 'Backspace']}
              proOptions={{ hideAttribution: true }}
              aria-label="Workflow graph"
            >
              <Background />
              <Controls />
              <MiniMap pannable zoomable ariaLabel="Overview of the graph" />
            </ReactFlow>
          </CanvasContext.Provider>
        </div>
      </div>
      <aside className="max-h-64 shrink-0 overflow-y-auto border-t border-slate-200 p-2 md:max-h-none md:w-64 md:border-l md:border-t-0" aria-label="Node settings">
        {selectedNode ? (
          <NodeSettings
            node={selectedNode}
            nodes={nodes}
            edges={edges}
            agents={agents}
            problems={problemsBy[selectedNode.id] ?? []}
            onChange={(data) => {
              setNodes((ns) => ns.map((n) => (n.id === selectedNode.id ? { ...n, data } : n)));
              markDirty();
            }}
            onConnect={(target, handle) => connect({ source: selectedNode.id, target, sourceHandle: handle ?? null, targetHandle: null })}
            onRemoveEdge={(id) => {
              setEdges((es) => es.filter((e) => e.id !== id));
              markDirty();
            }}
            onDelete={() => {
              setNodes((ns) => ns.filter((n) => n.id !== selectedNode.id));
              setEdges((es) => es.filter((e) => e.source !== selectedNode.id && e.target !== selectedNode.id));
              setSelected(null);
              markDirty();
            }}
          />
        ) : (
          <p className="text-sm text-slate-700">Select a node to edit its settings and connections. Add nodes from the toolbar; connect them by dragging from a node's bottom handle to another's top, or from the settings here.</p>
        )}
      </aside>
    </div>
  );
}
