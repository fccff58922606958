// The engine's node types (services/workflow/src/model/node.rs NODE_TYPES) and the settings
// each reads (model/validate.rs, model/remote.rs), for the palette and the settings form.

export type FieldKind = 'text' | 'textarea' | 'number' | 'json';

export interface FieldDef {
  key: string;
  label: string;
  kind: FieldKind;
  help?: string;
}

export interface NodeTypeDef {
  type: string;
  label: string;
  colour: string;
  /** Named outputs of branching nodes (edges leaving them need one). */
  branches?: string[];
  inputs: boolean;
  outputs: boolean;
  defaults: Record<string, unknown>;
  fields: FieldDef[];
}

const common: FieldDef[] = [
  { key: 'timeout_ms', label: 'Timeout (ms)', kind: 'number' },
  { key: 'retry', label: 'Retry ({"max_attempts","initial_backoff_ms"})', kind: 'json' },
];

export const NODE_TYPES: NodeTypeDef[] = [
  { type: 'start', label: 'Start', colour: 'bg-slate-700', inputs: false, outputs: true, defaults: {}, fields: [] },
  { type: 'agent', label: 'Agent', colour: 'bg-indigo-700', inputs: true, outputs: true, defaults: { agent: '', prompt_template: 'Analyse {{input}}' }, fields: [
    { key: 'agent', label: 'Agent name', kind: 'text' },
    { key: 'prompt_template', label: 'Prompt ({{input.x}}, {{node_id.field}})', kind: 'textarea' },
    ...common,
  ] },
  { type: 'sql', label: 'SQL', colour: 'bg-cyan-800', inputs: true, outputs: true, defaults: { query: 'SELECT 1 AS one', params: {} }, fields: [
    { key: 'query', label: 'Query (:name placeholders)', kind: 'textarea' },
    { key: 'params', label: 'Params (JSON object)', kind: 'json' },
    ...common,
  ] },
  { type: 'kb_search', label: 'Knowledge search', colour: 'bg-teal-800', inputs: true, outputs: true, defaults: { knowledge_base: '', query: '', top_k: 5 }, fields: [
    { key: 'knowledge_base', label: 'Knowledge base', kind: 'text' },
    { key: 'query', label: 'Query', kind: 'textarea' },
    { key: 'top_k', label: 'Top k', kind: 'number' },
    ...common,
  ] },
  { type: 'condition', label: 'Condition', colour: 'bg-amber-800', branches: ['true', 'false'], inputs: true, outputs: true, defaults: { expression: '' }, fields: [
    { key: 'expression', label: 'Expression, e.g. {{t.x}} > 2', kind: 'text' },
  ] },
  { type: 'transform', label: 'Transform', colour: 'bg-violet-800', inputs: true, outputs: true, defaults: { mapping: {} }, fields: [
    { key: 'mapping', label: 'Mapping (JSON object of templates)', kind: 'json' },
  ] },
  { type: 'integration_insert', label: 'Insert into integration', colour: 'bg-rose-800', inputs: true, outputs: true, defaults: { integration: '', table: '', values: {} }, fields: [
    { key: 'integration', label: 'Integration', kind: 'text' },
    { key: 'table', label: 'Table', kind: 'text' },
    { key: 'values', label: 'Values (JSON object: column → template)', kind: 'json' },
    ...common,
  ] },
  { type: 'human_approval', label: 'Human approval', colour: 'bg-orange-800', branches: ['approved', 'rejected'], inputs: true, outputs: true, defaults: { message: 'Approve the report?' }, fields: [
    { key: 'message', label: 'Message to the approver', kind: 'text' },
  ] },
  { type: 'delay', label: 'Delay', colour: 'bg-stone-700', inputs: true, outputs: true, defaults: { seconds: 1 }, fields: [
    { key: 'seconds', label: 'Seconds', kind: 'number' },
  ] },
  { type: 'a2a_agent', label: 'Remote A2A agent', colour: 'bg-fuchsia-800', inputs: true, outputs: true, defaults: { card_url: '', message: '{{input}}' }, fields: [
    { key: 'card_url', label: "Agent card URL (or the agent's base URL)", kind: 'text' },
    { key: 'message', label: 'Message (template)', kind: 'textarea' },
    { key: 'auth', label: 'Auth ({"bearer": "<token>"}; reads back redacted)', kind: 'json' },
    { key: 'headers', label: 'Extra headers (JSON object)', kind: 'json' },
    ...common,
  ] },
  { type: 'mcp_tool', label: 'MCP tool', colour: 'bg-sky-800', inputs: true, outputs: true, defaults: { server_url: '', tool: '', arguments: {} }, fields: [
    { key: 'server_url', label: 'MCP server URL (streamable HTTP)', kind: 'text' },
    { key: 'tool', label: 'Tool name', kind: 'text' },
    { key: 'arguments', label: 'Arguments (JSON object of templates)', kind: 'json' },
    { key: 'auth', label: 'Auth ({"bearer": "<token>"}; reads back redacted)', kind: 'json' },
    { key: 'headers', label: 'Extra headers (JSON object)', kind: 'json' },
    ...common,
  ] },
  { type: 'end', label: 'End', colour: 'bg-slate-700', inputs: true, outputs: false, defaults: {}, fields: [
    { key: 'output', label: 'Output (JSON of templates, optional)', kind: 'json' },
  ] },
];

export function nodeDef(type: string): NodeTypeDef | undefined {
  return NODE_TYPES.find((d) => d.type === type);
}
