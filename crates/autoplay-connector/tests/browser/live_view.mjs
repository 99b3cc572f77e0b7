// Drives the connector's live view in headless Chromium, in step with
// tests/ui_browser.rs, which runs the connector, posts the webhooks and restarts
// it. The two talk in lines: this script prints a step it reached on stdout and
// waits for the test's answer on stdin. Any failed check throws: exit status 1,
// the reason on stderr.
//
// Environment: LIVE_URL (http://127.0.0.1:PORT), LIVE_PRODUCT, LIVE_KEY,
// LIVE_SCENARIO (`restart`: the connector restarts, then a screenshot goes to
// LIVE_SCREENSHOT, a .png path; `drop`: only the connection drops), CHROMIUM
// (the executable).
import readline from 'node:readline';
import { chromium } from 'playwright-core';

const { LIVE_URL, LIVE_PRODUCT, LIVE_KEY, LIVE_SCREENSHOT, LIVE_SCENARIO, CHROMIUM } = process.env;
const lines = readline.createInterface({ input: process.stdin });
const input = lines[Symbol.asyncIterator]();

function say(step) {
  if (process.env.LIVE_DEBUG) console.error(`[browser] ${step}`);
  process.stdout.write(`${step}\n`);
}

async function expectFromTest(step) {
  const { value, done } = await input.next();
  if (done || value.trim() !== step) {
    throw new Error(`expected "${step}" from the test, got ${done ? 'end of input' : JSON.stringify(value)}`);
  }
}

function check(condition, message) {
  if (!condition) throw new Error(`check failed: ${message}`);
}

const browser = await chromium.launch({
  executablePath: CHROMIUM,
  args: ['--headless', '--no-sandbox', '--disable-gpu'],
  timeout: 30_000,
});
try {
  const page = await browser.newPage({ viewport: { width: 1280, height: 860 } });
  page.setDefaultTimeout(15_000);
  const problems = [];
  page.on('pageerror', (error) => problems.push(`page error: ${error}`));
  page.on('dialog', (dialog) => {
    problems.push(`a dialog opened: ${dialog.message()}`);
    dialog.dismiss();
  });
  const urls = [];
  page.on('request', (request) => urls.push(request.url()));
  const ticketHeaders = [];
  page.on('request', (request) => {
    if (request.url().includes('/tickets/')) ticketHeaders.push(request.headers().authorization);
  });

  // From the connector's front door to the live view, as a person would.
  await page.goto(`${LIVE_URL}/`);
  await page.click('a[href="/ui"]');
  await page.waitForURL('**/ui');
  await page.fill('#product', LIVE_PRODUCT);
  // A wrong key first: the page says so and opens no stream.
  await page.fill('#key', 'not-the-key');
  await page.click('#go');
  await page.waitForSelector('body[data-status="refused"]');
  const refusal = await page.locator('#status-text').innerText();
  check(refusal.includes('missing or invalid API key'), `the refusal is shown: ${refusal}`);
  check((await page.evaluate(() => document.body.dataset.streams)) === '0', 'no stream without a ticket');
  ticketHeaders.length = 0;
  await page.fill('#key', LIVE_KEY);
  await page.click('#go');
  await page.waitForSelector('body[data-status="live"]');
  say('connected');

  await expectFromTest('posted');
  const before = page.locator('article[data-session="sess_before"]');
  await before.locator('.session-count', { hasText: '4 actions' }).waitFor();
  await before.locator('.summary-text').first().waitFor();
  const beforeText = await before.textContent();
  check(beforeText.includes('Viewed Pricing'), `a pageview shows: ${beforeText}`);
  check(beforeText.includes("Clicked 'Start trial'"), `a click shows: ${beforeText}`);
  check(beforeText.includes('alice@example.com'), `the email shows: ${beforeText}`);
  check(beforeText.includes('covers 4 actions'), `the summary says what it covers: ${beforeText}`);
  const summary = await before.locator('.summary-text').first().innerText();
  check(summary.trim().length > 10, `the summary has text: ${summary}`);
  // A title carrying markup shows as text and creates no element.
  check(beforeText.includes('<img src=x onerror=window.pwned=1>'), `markup shows as text: ${beforeText}`);
  check((await page.locator('#sessions img').count()) === 0, 'no <img> made from event text');
  check((await page.evaluate(() => window.pwned)) === undefined, 'no script ran from event text');
  say('seen first session');

  if (LIVE_SCENARIO === 'drop') {
    // The connection dropped while the connector kept running: the browser
    // reconnects by itself, same URL and ticket, with Last-Event-ID, and gets
    // what was published meanwhile from the replay buffer.
    await expectFromTest('dropped and posted');
    const gap = page.locator('article[data-session="sess_gap"]');
    await gap.locator('.session-count', { hasText: '1 action' }).waitFor();
    await page.waitForSelector('body[data-status="live"]');
    check((await gap.textContent()).includes("Clicked 'Retry export'"), 'the event of the gap shows');
    const streams = await page.evaluate(() => document.body.dataset.streams);
    check(streams === '1', `the browser's own EventSource reconnected (streams opened: ${streams})`);
    check(ticketHeaders.length === 1, `one ticket was enough, not ${ticketHeaders.length}`);
    check((await before.locator('.session-count').innerText()) === '4 actions', 'no duplicates');
    check(problems.length === 0, problems.join('; '));
    say('done');
  } else {
    await restart(page, before, urls, ticketHeaders, problems);
  }
} finally {
  lines.close();
  await browser.close();
}

async function restart(page, before, urls, ticketHeaders, problems) {
  await expectFromTest('restarted and posted');
  const after = page.locator('article[data-session="sess_after"]');
  await after.locator('.session-count', { hasText: '3 actions' }).waitFor();
  await after.locator('.summary-text').first().waitFor();
  await page.waitForSelector('body[data-status="live"]');
  const afterText = await after.textContent();
  check(afterText.includes("Submitted 'signup'"), `a submit shows after the restart: ${afterText}`);
  check(afterText.includes('covers 3 actions'), `its summary shows: ${afterText}`);
  // What was shown before the restart is still there, once.
  check(
    (await before.locator('.session-count').innerText()) === '4 actions',
    'the first session is kept, without duplicates',
  );
  check((await page.locator('article.session').count()) === 2, 'two sessions shown');
  // The restarted connector refused the old ticket: the page had to fetch a
  // new one and open a second EventSource, by itself.
  const streams = await page.evaluate(() => document.body.dataset.streams);
  check(streams === '2', `two EventSources were opened (one per connector run), not ${streams}`);
  check(ticketHeaders.length >= 2, `a second ticket was fetched (${ticketHeaders.length})`);
  check(ticketHeaders.every((h) => h === `Bearer ${LIVE_KEY}`), 'the key went in the Authorization header');
  const leaked = urls.filter((u) => u.includes(LIVE_KEY) || u.includes(encodeURIComponent(LIVE_KEY)));
  check(leaked.length === 0, `the API key was in no URL: ${leaked}`);
  check(urls.some((u) => u.includes('lastEventId=')), 'the second stream resumed by lastEventId');
  check(problems.length === 0, problems.join('; '));

  await page.screenshot({ path: LIVE_SCREENSHOT, animations: 'disabled' });
  say('done');
}
