// The seed's chat-to-dashboard flow: sign in, ask the chat for a dashboard, click the action,
// the dashboard window opens, is still there after a reload and in a second tab, and a move in
// one tab reaches the other live.
import { axe, checkPage, ensureAgent, expect, newPage, shot, signIn, VIEWPORT } from './helpers.mjs';

export const name = 'chat-to-dashboard';

export async function run({ browser, appUrl, shared, log }) {
  const context = await browser.newContext({ viewport: VIEWPORT });
  const page = await newPage(context);
  const who = await signIn(page, appUrl, { screenshot: 'sign-in.png' });
  Object.assign(shared, who);
  log(`signed in (${who.mode}) as ${who.user} of ${who.tenant}; axe sign-in: no serious/critical`);
  shared.agent = await ensureAgent(appUrl, who.token);

  await page.getByTestId('chat-universe').click();
  const input = page.getByTestId('chat-input');
  await input.waitFor();
  await input.fill('Crée un dashboard analytics');
  await input.press('Enter');
  const started = Date.now();
  const action = page.getByTestId('action-button').first();
  await action.waitFor({ timeout: 240_000 });
  log(`answer with its action in ${((Date.now() - started) / 1000).toFixed(1)} s`);
  const intent = (await page.getByTestId('chat-intent').last().textContent())?.trim();
  const confidence = (await page.getByTestId('chat-confidence').last().textContent())?.trim();
  const agent = (await page.getByTestId('chat-agent').last().textContent())?.trim();
  expect(intent === 'GENERATE_UI', `intent shown is ${intent}, not GENERATE_UI`);
  expect(/^\d+%$/.test(confidence ?? ''), `confidence shown is ${confidence}`);
  expect(agent === shared.agent, `agent shown is ${agent}, not ${shared.agent}`);
  expect((await action.getAttribute('data-action-type')) === 'open_window', 'the action is not open_window');
  log(`intent ${intent} at ${confidence}, agent ${agent}, action “${(await action.textContent())?.trim()}”`);

  await action.click();
  await page.getByTestId('window-dashboard').waitFor();
  await page.getByTestId('dashboard').waitFor({ timeout: 20_000 });

  await page.reload();
  await page.getByTestId('window-dashboard').waitFor({ timeout: 20_000 });
  log('dashboard window restored after reload');

  const page2 = await newPage(context);
  await page2.goto(appUrl);
  await page2.getByTestId('window-dashboard').waitFor({ timeout: 20_000 });
  await page2.locator('[data-testid="sync-status"][data-state="open"]').waitFor({ timeout: 20_000 });
  await page.locator('[data-testid="sync-status"][data-state="open"]').waitFor({ timeout: 20_000 });
  log('dashboard window in a second tab');

  // Keyboard move in tab 1 (arrow keys on the title), persisted after the debounce, seen in tab 2.
  const title = page.getByTestId('window-dashboard').getByTestId('window-title');
  await title.focus();
  for (const k of ['ArrowRight', 'ArrowRight', 'ArrowRight', 'ArrowDown', 'ArrowDown']) await page.keyboard.press(k);
  const want = await page.getByTestId('window-dashboard').evaluate((el) => `${el.style.left} ${el.style.top}`);
  await page2.waitForFunction(
    (w) => {
      const el = document.querySelector('[data-testid="window-dashboard"]');
      return el && `${el.style.left} ${el.style.top}` === w;
    },
    want,
    { timeout: 15_000 },
  );
  log(`a move in tab 1 reached tab 2 live (${want})`);

  // Chat and dashboard side by side for the screenshot and the accessibility check.
  await page.getByTestId('task-chat').click();
  await shot(page, 'desktop-chat.png');
  const a = await axe(page, 'desktop with chat');
  log(`axe desktop+chat: no serious/critical (${a.minor} minor/moderate)`);

  // A request no agent's skill covers: the pipeline asks back instead of answering.
  await page.getByTestId('chat-input').fill('aide');
  await page.getByTestId('chat-input').press('Enter');
  const clarification = page.getByTestId('chat-clarification').last();
  await clarification.waitFor({ timeout: 120_000 });
  log(`clarification shown: “${(await page.getByTestId('chat-answer').last().textContent())?.trim()}”`);

  await checkPage(page);
  await checkPage(page2);
  await context.close();
}
