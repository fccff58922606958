// The workflow flow: build start -> agent -> sql -> human approval -> end in the editor, run it,
// each node turns green with its duration, another user approves the approval node, the run ends.
import { axe, checkPage, desktopAs, expect, secondUser, shot } from './helpers.mjs';

export const name = 'workflow';

async function select(page, id) {
  await page.locator(`.react-flow__node[data-id="${id}"]`).click({ position: { x: 20, y: 10 } });
  await page.locator('[data-testid="node-settings"]').getByText(id, { exact: true }).waitFor();
}

async function connectVia(page, from, to, handle) {
  await select(page, from);
  await page.getByTestId('connect-target').selectOption(to);
  if (handle) await page.getByTestId('connect-handle').selectOption(handle);
  await page.getByTestId('connect-add').click();
}

export async function run({ browser, appUrl, shared, log }) {
  expect(shared.token, 'needs the signed-in user of chat-to-dashboard');
  const { context, page } = await desktopAs(browser, appUrl, shared.token);
  await page.getByTestId('workflow-universe').click();
  const win = page.getByTestId('window-workflow');
  await win.waitFor();
  // The editor gets the whole desktop.
  await win.getByTestId('window-maximise').click();
  await page.getByTestId('workflow-editor').waitFor({ timeout: 20_000 });
  const wfName = `report_${shared.tenant}`.replace(/[^a-z0-9_]/g, '_');
  await page.getByTestId('wf-name').fill(wfName);

  for (const t of ['start', 'agent', 'sql', 'human_approval', 'end']) await page.getByTestId(`palette-${t}`).click();
  await select(page, 'agent_1');
  // The agent as users know it: its registry name (the engine resolves it to MindsDB's agent).
  await page.getByTestId('field-agent').fill(shared.agent);
  await page.getByTestId('field-prompt_template').fill('Résume les ventes du mois en une phrase.');
  await page.locator('.react-flow__controls-fitview').click();

  // One edge the mouse way (handle to handle), the others from the settings panel.
  await page
    .locator('.react-flow__node[data-id="start_1"] .react-flow__handle.source')
    .dragTo(page.locator('.react-flow__node[data-id="agent_1"] .react-flow__handle.target'));
  await connectVia(page, 'agent_1', 'sql_1');
  await connectVia(page, 'sql_1', 'human_approval_1');
  await connectVia(page, 'human_approval_1', 'end_1', 'approved');
  const edges = await page.locator('.react-flow__edge').count();
  expect(edges === 4, `the graph has ${edges} edges, not 4`);
  await page.getByTestId('wf-status').getByText('valid').waitFor({ timeout: 15_000 });
  log('graph built and valid');

  await page.getByTestId('wf-run').click();
  await page.getByTestId('wf-status').getByText(/v1/).waitFor({ timeout: 15_000 });
  const started = Date.now();
  const durations = {};
  for (const id of ['start_1', 'agent_1', 'sql_1']) {
    const node = page.locator(`[data-testid="node-${id}"][data-status="succeeded"]`);
    await node.waitFor({ timeout: 240_000 });
    durations[id] = (await node.getByTestId('node-duration').textContent())?.trim();
    expect(durations[id], `${id} shows no duration`);
  }
  await page.locator('[data-testid="node-human_approval_1"][data-status="waiting_approval"]').waitFor({ timeout: 60_000 });
  log(`nodes green with durations ${JSON.stringify(durations)}; approval waiting after ${((Date.now() - started) / 1000).toFixed(1)} s`);
  await shot(page, 'workflow.png');
  const a = await axe(page, 'workflow editor');
  log(`axe workflow: no serious/critical (${a.minor} minor/moderate)`);

  // The run's starter may not approve it (app.approval_self_allowed is off): another user of the
  // tenant does, from their own desktop, through the run history.
  const { context: other, page: p2 } = await desktopAs(browser, appUrl, await secondUser(appUrl, shared));
  await p2.getByTestId('workflow-universe').click();
  await p2.getByTestId('workflow-editor').waitFor({ timeout: 20_000 });
  await p2.getByRole('button', { name: new RegExp(`^${wfName}`) }).click();
  await p2.getByTestId('wf-runs').getByRole('button').first().click();
  await p2.locator('[data-testid="node-human_approval_1"][data-status="waiting_approval"]').waitFor({ timeout: 20_000 });
  await p2.getByTestId('approve').click();
  await p2.locator('[data-testid="node-end_1"][data-status="succeeded"]').waitFor({ timeout: 60_000 });
  await checkPage(p2);
  await other.close();
  await page.locator('[data-testid="node-end_1"][data-status="succeeded"]').waitFor({ timeout: 60_000 });
  await page.getByTestId('wf-status').getByText('run succeeded').waitFor({ timeout: 30_000 });
  log('approved by another user; end node green; run succeeded, live in the starter\'s editor');

  // A change saved is a new version; the history lists both, and the run in the run history.
  await select(page, 'sql_1');
  await page.getByTestId('field-query').fill('SELECT 2 AS two');
  await page.getByTestId('wf-save').click();
  await page.getByTestId('wf-versions').getByText('v2').waitFor({ timeout: 15_000 });
  await page.getByTestId('wf-versions').getByText('v1').waitFor();
  await page.getByTestId('wf-runs').getByText('succeeded').first().waitFor({ timeout: 15_000 });
  log('saved as v2; versions v2 and v1 listed; the run in the history as succeeded');

  // A second run, cancelled while its agent works.
  await page.getByTestId('wf-run').click();
  await page.locator('[data-testid="node-agent_1"][data-status="running"]').waitFor({ timeout: 60_000 });
  await page.getByTestId('wf-cancel').click();
  await page.getByTestId('wf-status').getByText('run cancelled').waitFor({ timeout: 60_000 });
  log('a second run cancelled from the editor while its agent node ran');
  await checkPage(page);
  await context.close();
}
