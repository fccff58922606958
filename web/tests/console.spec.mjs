// The console: the tenant's live events arrive, agents and skills are listed, the audit log
// shows for an admin; screenshots and axe on its tabs; and the desktop on a narrow screen.
import { axe, checkPage, desktopAs, shot } from './helpers.mjs';

export const name = 'console';

export async function run({ browser, appUrl, shared, log }) {
  const { context, page } = await desktopAs(browser, appUrl, shared.token);
  await page.getByTestId('console-universe').click();
  const win = page.getByTestId('window-console');
  await win.waitFor();
  await win.getByTestId('window-maximise').click();
  await page.getByTestId('feed-status').getByText('open').waitFor({ timeout: 20_000 });
  // A change on the desktop is an event of the tenant: it shows in the feed.
  await win.getByTestId('window-maximise').click();
  await page.getByTestId('event-feed').waitFor({ timeout: 20_000 });
  await win.getByTestId('window-maximise').click();
  log('live event feed received the window events');
  await shot(page, 'console.png');
  let a = await axe(page, 'console events');
  await page.getByTestId('tab-agents').click();
  await page.getByTestId('agent-list').getByText(shared.agent).waitFor({ timeout: 20_000 });
  a = await axe(page, 'console agents');
  await page.getByTestId('tab-skills').click();
  await page.getByTestId('skill-list').getByText('ui-generation').waitFor({ timeout: 20_000 });
  await page.getByTestId('tab-audit').click();
  await page.getByTestId('audit-log').waitFor({ timeout: 20_000 });
  await shot(page, 'console-audit.png');
  a = await axe(page, 'console audit');
  log(`agents, skills and the audit log shown; axe console: no serious/critical (${a.minor} minor/moderate on the last tab)`);
  await checkPage(page);
  await context.close();

  const { context: narrow, page: n } = await desktopAs(browser, appUrl, shared.token, { viewport: { width: 390, height: 800 }, isMobile: true, hasTouch: true });
  await n.getByTestId('chat-universe').click();
  await n.getByTestId('window-chat').waitFor();
  await shot(n, 'narrow-chat.png');
  a = await axe(n, 'narrow desktop');
  log('narrow screen (390x800): one window full screen; axe: no serious/critical');
  await checkPage(n);
  await narrow.close();
}
