// The web client in a real browser: two users in two Chromium contexts, everything through the
// UI. Both register; A creates a private room and adds B; they chat, see each other type and
// come and go; B reacts; A edits and deletes; a thread is opened and replied to; a mention shows
// as unread; then B goes offline while A sends, edits, reacts, deletes and replies in the
// thread, and when B is back B's screen shows every one of those changes.
//
// Usage: node scenario.mjs http://127.0.0.1:PORT   (tests/browser.rs starts the server and runs it)
// CHROMIUM: the browser (default /usr/bin/chromium); SCREENSHOTS=dir saves PNGs of the main screens.
// Prints one line per check and "N passed, M failed"; exits 1 if anything failed.
import { chromium } from 'playwright-core';
import { mkdirSync } from 'node:fs';
import { join } from 'node:path';

const base = process.argv[2];
if (!base) {
  console.error('usage: node scenario.mjs <base url>');
  process.exit(2);
}
const executablePath = process.env.CHROMIUM || '/usr/bin/chromium';
const shots = process.env.SCREENSHOTS;
// The server's ACCESS_TOKEN_TTL (seconds), when it is short: B then stays offline longer than
// that, so B comes back with an expired token and the client must refresh it to reconnect.
const ttl = Number(process.env.ACCESS_TOKEN_TTL || 0) * 1000;
if (shots) mkdirSync(shots, { recursive: true });

const WAIT = 10_000; // the longest any one thing may take to show
const started = Date.now();
let passed = 0;
let failed = 0;
let browser;

// The whole run is bounded, whatever hangs.
const watchdog = setTimeout(async () => {
  console.log('FAIL the scenario took longer than 90 s');
  await browser?.close().catch(() => {});
  process.exit(1);
}, 90_000);

/** Runs one check; the first failure ends the scenario (later steps build on earlier ones). */
async function check(name, fn) {
  const t0 = Date.now();
  try {
    await fn();
    passed += 1;
    console.log(`ok   ${name} (${((Date.now() - t0) / 1000).toFixed(1)} s)`);
  } catch (err) {
    failed += 1;
    console.log(`FAIL ${name} -- ${String(err?.message ?? err).split('\n').slice(0, 6).join('\n     ')}`);
    throw new Stop();
  }
}
class Stop extends Error {}

const tag = Math.random().toString(36).slice(2, 7);
const A = { username: `alice_${tag}`, display: 'Alice' };
const B = { username: `bob_${tag}`, display: 'Bob' };
const password = 'correct horse battery';
const roomName = `plans-${tag}`;

const problems = []; // uncaught exceptions and CSP violations, on either page
function watch(page, who) {
  page.on('pageerror', (err) => problems.push(`${who}: ${err.message}`));
  page.on('console', (msg) => {
    if (/Content.Security.Policy/i.test(msg.text())) problems.push(`${who}: ${msg.text()}`);
  });
}

const byTest = (page, id, attrs = {}) =>
  page.locator(`[data-testid="${id}"]${Object.entries(attrs).map(([k, v]) => `[data-${k}="${v}"]`).join('')}`);
const message = (page, text) => byTest(page, 'message').filter({ hasText: text });
const visible = (locator, timeout = WAIT) => locator.first().waitFor({ state: 'visible', timeout });
const gone = (locator, timeout = WAIT) => locator.first().waitFor({ state: 'detached', timeout });
const shoot = async (page, name) => {
  if (shots) await page.screenshot({ path: join(shots, `${name}.png`) });
};
/** Waits until the element's text contains `text` (or, `exact`, is it). */
async function hasText(locator, text, timeout = WAIT, exact = false) {
  const end = Date.now() + timeout;
  let seen;
  while (Date.now() < end) {
    seen = (await locator.first().textContent({ timeout }).catch(() => null)) ?? '';
    if (exact ? seen.trim() === text : seen.includes(text)) return;
    await new Promise((r) => setTimeout(r, 50));
  }
  throw new Error(`expected "${text}", saw "${seen}"`);
}
/** The message's hover toolbar is shown on hover only, as for a person. */
async function act(page, text, action) {
  const msg = message(page, text).first();
  await msg.hover();
  await msg.locator(`[data-testid="${action}"]`).click({ timeout: WAIT });
}

async function register(page, user, screenshot) {
  await page.goto(base + '/');
  await page.getByTestId('auth-mode-register').click();
  await page.getByTestId('auth-username').fill(user.username);
  await page.getByTestId('auth-password').fill(password);
  await page.getByTestId('auth-display-name').fill(user.display);
  if (screenshot) await shoot(page, 'login');
  await page.getByTestId('auth-submit').click();
  await hasText(page.getByTestId('me'), `@${user.username}`);
  await visible(byTest(page, 'conn-status', { state: 'online' }));
}

async function send(page, text, input = 'composer-input') {
  // Typed key by key, as a person does: the client says "typing" from the first key.
  await page.getByTestId(input).pressSequentially(text, { delay: 5 });
  await page.getByTestId(input).press('Enter');
}

const sessionToken = (page) => page.evaluate(() => JSON.parse(sessionStorage.getItem('huddle.session')).tokens.access_token);

try {
  const args = process.getuid?.() === 0 ? ['--no-sandbox'] : []; // Chromium's sandbox refuses root (CI)
  await check('chromium starts', async () => {
    browser = await chromium.launch({ executablePath, args, timeout: WAIT });
  });
  const context = () => browser.newContext({ viewport: { width: 1280, height: 760 }, deviceScaleFactor: 1 });
  const ctxA = await context();
  const ctxB = await context();
  const a = await ctxA.newPage();
  const b = await ctxB.newPage();
  watch(a, 'A');
  watch(b, 'B');

  let firstTokenA;
  await check('A registers through the form and is connected', async () => {
    await register(a, A, true);
    firstTokenA = await sessionToken(a);
  });
  await check('B registers; both land in #general, where A sees B arrive', async () => {
    await register(b, B, false);
    await hasText(a.getByTestId('room-title'), '#general');
    await visible(byTest(a, 'online-user', { username: B.username }));
    await visible(byTest(b, 'online-user', { username: A.username }));
  });

  await check('A creates a private room', async () => {
    await a.getByTestId('new-room').click();
    await a.getByTestId('new-room-name').fill(roomName);
    await a.getByTestId('new-room-visibility').selectOption('private');
    await a.getByTestId('new-room-topic').fill('Where we plan things');
    await a.getByTestId('new-room-submit').click();
    await hasText(a.getByTestId('room-title'), `#${roomName}`);
    await visible(byTest(a, 'room-item', { 'room-name': roomName }));
  });
  await check('A adds B as a member', async () => {
    await a.getByTestId('members-toggle').click();
    await a.getByTestId('member-add-input').fill(B.username);
    await a.getByTestId('member-add-submit').click();
    await visible(byTest(a, 'member-item', { username: B.username }));
    await a.getByTestId('members-toggle').click();
  });
  await check('B sees the room in its list and opens it; each sees the other present', async () => {
    await b.getByTestId('rooms-refresh').click();
    await byTest(b, 'room-item', { 'room-name': roomName }).click({ timeout: WAIT });
    await hasText(b.getByTestId('room-title'), `#${roomName}`);
    await visible(byTest(a, 'online-user', { username: B.username }));
    await visible(byTest(b, 'online-user', { username: A.username }));
  });

  await check("B sees A typing, then A's message", async () => {
    await a.getByTestId('composer-input').pressSequentially('hello bob', { delay: 5 });
    await hasText(b.getByTestId('typing-indicator'), 'Alice is typing');
    await a.getByTestId('composer-input').press('Enter');
    await visible(message(b, 'hello bob'));
  });
  await check('the typing indicator goes when the message is sent', async () => {
    const end = Date.now() + WAIT;
    while ((await b.getByTestId('typing-indicator').textContent()) !== '') {
      if (Date.now() > end) throw new Error('still typing');
      await new Promise((r) => setTimeout(r, 50));
    }
  });
  await check('A sees B typing, then the answer', async () => {
    await b.getByTestId('composer-input').pressSequentially('hi alice', { delay: 5 });
    await hasText(a.getByTestId('typing-indicator'), 'Bob is typing');
    await b.getByTestId('composer-input').press('Enter');
    await visible(message(a, 'hi alice'));
  });

  await check("B reacts to A's message and A sees the count", async () => {
    await act(b, 'hello bob', 'message-react');
    await byTest(b, 'emoji-option', { emoji: '👍' }).click();
    await visible(message(b, 'hello bob').locator('[data-testid="reaction"][data-emoji="👍"][data-mine="true"]'));
    await hasText(message(a, 'hello bob').locator('[data-testid="reaction"][data-emoji="👍"] [data-testid="reaction-count"]'), '1', WAIT, true);
  });
  await check('A edits a message and B sees the new text, marked edited', async () => {
    await send(a, 'this has a tpyo');
    await visible(message(b, 'this has a tpyo'));
    await act(a, 'this has a tpyo', 'message-edit');
    await a.getByTestId('edit-input').fill('this is fixed');
    await a.getByTestId('edit-save').click();
    await visible(message(b, 'this is fixed').locator('[data-testid="message-edited"]'));
    await gone(message(b, 'this has a tpyo'));
  });
  await check('A deletes a message and B sees it deleted', async () => {
    await send(a, 'delete me');
    await visible(message(b, 'delete me'));
    const id = await message(a, 'delete me').first().getAttribute('data-id');
    await act(a, 'delete me', 'message-delete');
    await message(a, 'delete me').first().getByTestId('delete-confirm').click();
    await visible(byTest(b, 'message', { id }).getByTestId('message-deleted'));
    await gone(message(b, 'delete me'));
  });

  await check('B starts a thread on A\'s message; A sees "1 reply" and opens it', async () => {
    await act(b, 'hello bob', 'message-thread');
    await visible(b.getByTestId('thread-panel'));
    await send(b, 'a reply in the thread', 'thread-input');
    await visible(byTest(b, 'thread-message').filter({ hasText: 'a reply in the thread' }));
    await hasText(message(a, 'hello bob').getByTestId('thread-summary'), '1 reply');
    await message(a, 'hello bob').getByTestId('thread-summary').click();
    await visible(byTest(a, 'thread-message').filter({ hasText: 'a reply in the thread' }));
    // Thread replies live under their root, not in the room's timeline.
    await gone(message(a, 'a reply in the thread'), 1000);
  });
  await check('A replies in the thread and B sees it there', async () => {
    await send(a, 'alice in the thread', 'thread-input');
    await visible(byTest(b, 'thread-message').filter({ hasText: 'alice in the thread' }));
    await hasText(message(b, 'hello bob').getByTestId('thread-summary'), '2 replies');
    await shoot(a, 'thread');
  });

  await check('a mention in a room B is not looking at shows as unread and as a mention', async () => {
    await byTest(b, 'room-item', { 'room-name': 'general' }).click();
    await hasText(b.getByTestId('room-title'), '#general');
    await send(a, `@${B.username} can you look at this?`);
    const item = byTest(b, 'room-item', { 'room-name': roomName });
    await hasText(item.getByTestId('room-unread'), '1', WAIT, true);
    await hasText(item.getByTestId('room-mentions'), '@1', WAIT, true);
    await item.click();
    await gone(item.getByTestId('room-unread'));
    await visible(message(b, 'can you look at this?'));
  });
  await check('A opens a direct room with B from the members list; B gets it in its list', async () => {
    await a.getByTestId('members-toggle').click();
    await byTest(a, 'member-item', { username: B.username }).getByTestId('member-message').click();
    await hasText(a.getByTestId('room-title'), '@Bob');
    await send(a, 'psst, just between us');
    const dm = byTest(b, 'room-item', { 'room-name': A.username });
    await hasText(dm, '@Alice');
    await hasText(dm.getByTestId('room-unread'), '1', WAIT, true);
    await dm.click();
    await visible(message(b, 'psst, just between us'));
    await byTest(a, 'room-item', { 'room-name': roomName }).click();
    await byTest(b, 'room-item', { 'room-name': roomName }).click();
    await hasText(b.getByTestId('room-title'), `#${roomName}`);
  });
  await check('A sends one more message, and closes the thread', async () => {
    await send(a, 'doomed message');
    await visible(message(b, 'doomed message'));
    if (await a.getByTestId('thread-close').isVisible()) await a.getByTestId('thread-close').click();
  });

  let offlineAt;
  let tokenB;
  await check('B goes offline and A sees B leave', async () => {
    tokenB = await sessionToken(b);
    offlineAt = Date.now();
    await ctxB.setOffline(true);
    await visible(byTest(b, 'conn-status', { state: 'offline' }));
    await gone(byTest(a, 'online-user', { username: B.username }));
  });
  await check('while B is away, A sends, edits, reacts, deletes and replies in the thread', async () => {
    await send(a, 'sent while you were away, 1');
    await send(a, 'sent while you were away, 2');
    await act(a, 'this is fixed', 'message-edit');
    await a.getByTestId('edit-input').fill('fixed again while you were away');
    await a.getByTestId('edit-save').click();
    await visible(message(a, 'fixed again while you were away'));
    await act(a, 'hi alice', 'message-react');
    await byTest(a, 'emoji-option', { emoji: '🎉' }).click();
    await visible(message(a, 'hi alice').locator('[data-testid="reaction"][data-emoji="🎉"]'));
    await act(a, 'doomed message', 'message-delete');
    await message(a, 'doomed message').first().getByTestId('delete-confirm').click();
    await gone(message(a, 'doomed message'));
    await message(a, 'hello bob').getByTestId('thread-summary').click();
    await send(a, 'a thread reply while you were away', 'thread-input');
    await hasText(message(a, 'hello bob').getByTestId('thread-summary'), '3 replies');
    // Nothing of it can have reached B yet.
    if ((await message(b, 'sent while you were away').count()) !== 0) throw new Error('B got a message while offline');
  });
  await check('B comes back online, with a refreshed token, and A sees B return', async () => {
    if (ttl) await b.waitForTimeout(Math.max(0, offlineAt + ttl + 500 - Date.now()));
    await ctxB.setOffline(false);
    await visible(byTest(b, 'conn-status', { state: 'online' }), 15_000);
    await visible(byTest(a, 'online-user', { username: B.username }));
    if (ttl && (await sessionToken(b)) === tokenB) throw new Error("B's token expired offline and was never refreshed");
  });
  await check("B's screen shows every change made while it was away, each once", async () => {
    await visible(message(b, 'sent while you were away, 1'));
    await visible(message(b, 'sent while you were away, 2'));
    await visible(message(b, 'fixed again while you were away').getByTestId('message-edited'));
    await gone(message(b, 'this is fixed'));
    await hasText(message(b, 'hi alice').locator('[data-testid="reaction"][data-emoji="🎉"] [data-testid="reaction-count"]'), '1', WAIT, true);
    await gone(message(b, 'doomed message'));
    await hasText(message(b, 'hello bob').getByTestId('thread-summary'), '3 replies');
    await message(b, 'hello bob').getByTestId('thread-summary').click();
    await visible(byTest(b, 'thread-message').filter({ hasText: 'a thread reply while you were away' }));
    for (const text of ['sent while you were away, 1', 'sent while you were away, 2', 'hello bob']) {
      const n = await message(b, text).count();
      if (n !== 1) throw new Error(`"${text}" shown ${n} times`);
    }
    await b.getByTestId('thread-close').click();
    await shoot(b, 'chat');
  });
  await check('the session outlived its access token (ACCESS_TOKEN_TTL): the client refreshed it', async () => {
    const now = await sessionToken(a);
    if (now === firstTokenA) throw new Error(`the access token never changed in ${Math.round((Date.now() - started) / 1000)} s`);
    await send(a, 'still here after the refresh');
    await visible(message(b, 'still here after the refresh'));
  });
  await check('no uncaught error and no CSP violation on either page', async () => {
    if (problems.length) throw new Error(problems.join('\n'));
  });
  await check('the API docs page loads under the same CSP', async () => {
    const docs = await ctxA.newPage();
    const violations = [];
    docs.on('console', (msg) => {
      if (/Content.Security.Policy/i.test(msg.text())) violations.push(msg.text());
    });
    docs.on('pageerror', (err) => violations.push(err.message));
    await docs.goto(base + '/docs');
    await visible(docs.locator('#swagger-ui .opblock').first(), WAIT);
    // The server's own document: every operation of it is on the page.
    const described = await (await fetch(base + '/openapi.json')).json();
    const operations = Object.values(described.paths).reduce((n, item) => n + Object.keys(item).length, 0);
    const shown = await docs.locator('#swagger-ui .opblock').count();
    if (shown !== operations) throw new Error(`the docs page shows ${shown} operations of ${operations}`);
    await docs.locator('.opblock-summary').first().click();
    await visible(docs.locator('.opblock-body').first());
    await docs.waitForTimeout(300);
    await shoot(docs, 'docs');
    if (violations.length) throw new Error(violations.join('\n'));
  });
} catch (err) {
  if (!(err instanceof Stop)) {
    failed += 1;
    console.log(`FAIL no exception -- ${err?.stack ?? err}`);
  }
} finally {
  clearTimeout(watchdog);
  await browser?.close().catch(() => {});
}

console.log(`${passed} passed, ${failed} failed in ${((Date.now() - started) / 1000).toFixed(1)} s`);
process.exit(failed === 0 ? 0 : 1);
