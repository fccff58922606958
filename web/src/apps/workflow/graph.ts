import type { Edge, Node, Viewport } from '@xyflow/react';
import type { WorkflowGraph } from '../../api/types';

/** The editor's graph as the gateway stores it (React Flow's shape; handles as source_handle). */
export function toGraphInput(nodes: Node[], edges: Edge[], viewport?: Viewport) {
  return {
    nodes: nodes.map((n) => ({ id: n.id, type: n.type, position: { x: Math.round(n.position.x), y: Math.round(n.position.y) }, data: n.data ?? {} })),
    edges: edges.map((e) => ({ id: e.id, source: e.source, target: e.target, source_handle: e.sourceHandle ?? null, target_handle: e.targetHandle ?? null })),
    viewport: viewport ?? null,
  };
}

export function fromGraph(g: WorkflowGraph | null | undefined): { nodes: Node[]; edges: Edge[]; viewport?: Viewport } {
  if (!g) return { nodes: [], edges: [] };
  const vp = (g.viewport ?? (g.editor_state as { viewport?: Viewport } | undefined)?.viewport) as Viewport | undefined;
  return {
    nodes: g.nodes.map((n) => ({ id: n.id, type: n.type, position: { x: n.position.x, y: n.position.y }, data: (n.data ?? {}) as Record<string, unknown> })),
    edges: g.edges.map((e) => ({ id: e.id, source: e.source, target: e.target, sourceHandle: e.sourceHandle ?? null, targetHandle: e.targetHandle ?? null, label: e.sourceHandle ?? undefined })),
    viewport: vp && typeof vp.x === 'number' ? vp : undefined,
  };
}

/** A node id not in use: `<type>_<n>`. */
export function freshId(type: string, nodes: Node[]): string {
  const taken = new Set(nodes.map((n) => n.id));
  for (let i = 1; ; i++) {
    const id = `${type}_${i}`;
    if (!taken.has(id)) return id;
  }
}

export function edgeId(source: string, target: string, handle?: string | null): string {
  return `e_${source}_${handle ? `${handle}_` : ''}${target}`;
}
