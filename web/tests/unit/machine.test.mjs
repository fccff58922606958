// desktopSystemMachine without a browser: versions only go forward, a window with unsaved local
// changes ignores remote moves, open/close/focus events keep the stacks right. Bundled from the
// TypeScript source with Vite's esbuild; `npm run test:unit` (node's test runner).
import { test } from 'node:test';
import assert from 'node:assert/strict';
import { mkdirSync } from 'node:fs';
import { dirname, join } from 'node:path';
import { pathToFileURL } from 'node:url';
import { build } from 'esbuild';
import { createActor } from 'xstate';
import { WEB } from '../platform.mjs';

// Inside web/node_modules so the bundle's `xstate` import resolves to the app's own copy.
const out = join(WEB, 'node_modules/.cache/getlood-unit/machine.mjs');
mkdirSync(dirname(out), { recursive: true });
await build({ entryPoints: [join(WEB, 'src/desktop/machine.ts')], bundle: true, format: 'esm', platform: 'node', outfile: out, external: ['xstate'], logLevel: 'error' });
const { desktopSystemMachine, stacked } = await import(pathToFileURL(out).href);

const win = (id, over = {}) => ({ id, desktop_id: 'd1', app_id: id, title: id, x: 10, y: 10, width: 400, height: 300, z_index: 1, state: 'normal', version: 1, props: {}, ...over });
const desktop = (windows) => ({ id: 'd1', name: 'Main', owner_user_id: 'u', version: 5, windows, focus_stack: windows.map((w) => w.id).reverse() });

function started(windows = [win('a'), win('b', { z_index: 2 })]) {
  const actor = createActor(desktopSystemMachine, { input: { desktopId: 'd1' } }).start();
  actor.send({ type: 'RESTORE_STATE', desktop: desktop(windows) });
  return actor;
}
const ctx = (a) => a.getSnapshot().context;
const ev = (type, data) => ({ type: 'REMOTE_EVENT', event: { id: `e-${Math.random()}`, type, entity_id: 'd1', actor: 'u', data } });

test('restore puts the machine in ready with the windows bottom first', () => {
  const a = started();
  assert.ok(a.getSnapshot().matches('ready'));
  assert.deepEqual(stacked(ctx(a)).map((w) => w.id), ['a', 'b']);
});

test('move and resize stay on screen and above the minimum size', () => {
  const a = started();
  a.send({ type: 'MOVE', id: 'a', x: 50.6, y: -20 });
  a.send({ type: 'RESIZE', id: 'a', width: 10, height: 10 });
  assert.deepEqual([ctx(a).windows.a.x, ctx(a).windows.a.y, ctx(a).windows.a.width, ctx(a).windows.a.height], [51, 0, 240, 160]);
});

test('a remote move applies only when newer, and never over unsaved local changes', () => {
  const a = started();
  a.send(ev('window.moved', { window_id: 'a', version: 1, geometry: { x: 99 } }));
  assert.equal(ctx(a).windows.a.x, 10, 'same version: skipped');
  a.send(ev('window.moved', { window_id: 'a', version: 2, geometry: { x: 99, y: 5 } }));
  assert.deepEqual([ctx(a).windows.a.x, ctx(a).windows.a.version], [99, 2]);
  a.send({ type: 'PENDING', id: 'a', delta: 1 });
  a.send({ type: 'MOVE', id: 'a', x: 1, y: 1 });
  a.send(ev('window.moved', { window_id: 'a', version: 3, geometry: { x: 500 } }));
  assert.equal(ctx(a).windows.a.x, 1, 'pending: the local move stays');
  a.send({ type: 'PENDING', id: 'a', delta: -1 });
  assert.deepEqual(ctx(a).pending, {});
});

test("the server's answer keeps local geometry while changes are pending, and versions never go back", () => {
  const a = started();
  a.send({ type: 'PENDING', id: 'a', delta: 1 });
  a.send({ type: 'MOVE', id: 'a', x: 70, y: 70 });
  a.send({ type: 'SERVER_WINDOW', window: win('a', { x: 20, version: 4 }) });
  assert.deepEqual([ctx(a).windows.a.x, ctx(a).windows.a.version], [70, 4]);
  a.send({ type: 'PENDING', id: 'a', delta: -1 });
  a.send({ type: 'SERVER_WINDOW', window: win('a', { x: 30, version: 3 }) });
  assert.deepEqual([ctx(a).windows.a.x, ctx(a).windows.a.version], [30, 4]);
});

test('focus raises the window and leads the focus stack', () => {
  const a = started();
  a.send({ type: 'FOCUS', id: 'a' });
  assert.equal(ctx(a).focusStack[0], 'a');
  assert.ok(ctx(a).windows.a.z_index > ctx(a).windows.b.z_index);
  assert.deepEqual(stacked(ctx(a)).map((w) => w.id), ['b', 'a']);
});

test('opened and closed events add and remove windows once', () => {
  const a = started();
  a.send(ev('window.opened', { window: win('c', { z_index: 3 }), desktop_version: 6, focus_stack: ['c', 'b', 'a'] }));
  a.send(ev('window.opened', { window: win('c', { z_index: 3, x: 999 }), desktop_version: 6, focus_stack: ['c', 'b', 'a'] }));
  assert.equal(ctx(a).windows.c.x, 10, 'a repeated open changes nothing');
  assert.equal(ctx(a).desktopVersion, 6);
  a.send(ev('window.closed', { window_id: 'b', desktop_version: 7, focus_stack: ['c', 'a'] }));
  assert.deepEqual(Object.keys(ctx(a).windows).sort(), ['a', 'c']);
  assert.deepEqual(ctx(a).focusStack, ['c', 'a']);
});

test('a state change from elsewhere minimises; a conflict is held until resolved', () => {
  const a = started();
  a.send(ev('window.state_changed', { window_id: 'a', version: 2, state: 'minimized', focus_stack: ['b'] }));
  assert.equal(ctx(a).windows.a.state, 'minimized');
  a.send({ type: 'CONFLICT', conflict: { windowId: 'b', mine: win('b'), theirs: win('b', { x: 300, version: 9 }) } });
  assert.equal(ctx(a).conflict.theirs.x, 300);
  a.send({ type: 'CONFLICT_RESOLVED' });
  assert.equal(ctx(a).conflict, null);
});
