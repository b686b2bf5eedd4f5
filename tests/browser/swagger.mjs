// The Swagger UI of the all-in-one binary, driven in a real Chromium (issue 9).
//
//   node tests/browser/swagger.mjs BASE_URL ARTIFACT_DIR [SCREENSHOT_PNG]
//
// Checks, against a freshly started `order-system` at BASE_URL:
//  - `GET /` redirects to `/docs/`; every `/docs/{slug}/openapi.json` lists the servers `/`
//    first and `http://arch.homework` second;
//  - on `/docs/`, the top-bar selector offers the four documents, and selecting each one lists
//    that service's operations;
//  - users: "Try it out" on `POST /users` with a unique username/e-mail/password typed into the
//    body editor -> 201 and the new id in the rendered response; then `POST /users/tokens` with
//    that username and password -> 200 and a token, which goes into the "Authorize" dialog
//    (scheme user_token) once and is used by every later "Try it out", in every document;
//  - billing: `POST /billing/accounts/{user_id}/deposit` for that user -> 200 and the balance;
//  - orders: `POST /orders` for that user -> 201 and `"status": "paid"` in the rendered response
//    (screenshot: SCREENSHOT_PNG, when given);
//  - notifications: `GET /notifications?user_id=` -> the `order_paid` letter for that order;
//  - every request made through "Try it out" gets a unique X-Request-Id typed in, and the
//    rendered answer carries it back;
//  - every per-service page `/docs/{slug}/` shows its own document;
//  - no console error, no uncaught exception, no failed request, no HTTP error answer and no
//    request to a host other than this machine, from first page load to the end.
// A screenshot of every page goes to ARTIFACT_DIR. Exit code 0 only when everything held.
// "note" lines are findings that do not fail the test (an operation without a summary, a header
// the page pre-fills with a fixed example value).
import { chromium } from 'playwright-core';
import { mkdtempSync, mkdirSync, rmSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';

const [baseArg, artifactDir, committedShot] = process.argv.slice(2);
if (!baseArg || !artifactDir) {
  console.error('usage: node tests/browser/swagger.mjs BASE_URL ARTIFACT_DIR [SCREENSHOT_PNG]');
  process.exit(2);
}
const BASE = baseArg.replace(/\/+$/, '');
const ORIGIN = new URL(BASE).origin;
const LOCAL_HOSTS = new Set(['127.0.0.1', 'localhost', '[::1]']);
mkdirSync(artifactDir, { recursive: true });

const CHROMIUM_ARGS = [
  '--headless',
  '--no-sandbox',
  '--disable-gpu',
  '--no-first-run',
  '--disable-background-networking',
  '--disable-component-update',
  '--disable-sync',
  '--disable-quic',
];

// What each document must list (method, path), as the page shows it.
const SERVICES = {
  users: { title: /user/i, ops: [['POST', '/users'], ['POST', '/users/tokens'], ['GET', '/users/{id}']] },
  billing: {
    title: /billing/i,
    ops: [
      ['GET', '/billing/accounts/{user_id}'],
      ['POST', '/billing/accounts/{user_id}/deposit'],
      ['POST', '/billing/accounts/{user_id}/withdraw'],
      ['GET', '/billing/accounts/{user_id}/transactions'],
    ],
  },
  orders: { title: /order/i, ops: [['POST', '/orders'], ['GET', '/orders'], ['GET', '/orders/{id}']] },
  notifications: { title: /notification/i, ops: [['GET', '/notifications']] },
};
const SLUGS = Object.keys(SERVICES);

// ------------------------------------------------------------------ bookkeeping
const problems = [];
let checks = 0;
const ok = (what) => {
  checks += 1;
  console.log(`ok   ${what}`);
};
const fail = (what) => {
  problems.push(what);
  console.log(`FAIL ${what}`);
};
const check = (cond, what) => (cond ? ok(what) : fail(what));
const notes = [];
const note = (what) => {
  notes.push(what);
  console.log(`note ${what}`);
};

async function step(name, fn) {
  console.log(`\n--- ${name}`);
  try {
    return await fn();
  } catch (err) {
    fail(`${name}: ${err && err.message ? err.message.split('\n')[0] : err}`);
    return undefined;
  }
}

// ------------------------------------------------------------------ plain HTTP checks
await step('GET / redirects to /docs/', async () => {
  const res = await fetch(`${BASE}/`, { redirect: 'manual' });
  const location = res.headers.get('location');
  check(res.status >= 300 && res.status < 400, `GET / answers a redirect (${res.status})`);
  check(location && new URL(location, `${BASE}/`).href === `${BASE}/docs/`, `GET / Location is /docs/ (${location})`);
});

await step('servers of every document', async () => {
  for (const slug of SLUGS) {
    const res = await fetch(`${BASE}/docs/${slug}/openapi.json`);
    check(res.status === 200, `GET /docs/${slug}/openapi.json answers 200 (${res.status})`);
    const doc = await res.json();
    const urls = (doc.servers || []).map((s) => s.url);
    check(
      urls[0] === '/' && urls[1] === 'http://arch.homework',
      `/docs/${slug}/openapi.json servers are "/" then "http://arch.homework" (${JSON.stringify(urls)})`,
    );
  }
});

// ------------------------------------------------------------------ the browser
const profile = mkdtempSync(join(tmpdir(), 'swagger-chromium-'));
const context = await chromium.launchPersistentContext(profile, {
  executablePath: '/usr/bin/chromium',
  headless: true,
  args: CHROMIUM_ARGS,
  viewport: { width: 1280, height: 900 },
  timeout: 60_000,
});
context.setDefaultTimeout(20_000);

// Every request leaving the page: only this machine may be asked anything.
const requests = [];
await context.route('**/*', (route) => {
  const url = new URL(route.request().url());
  if ((url.protocol === 'http:' || url.protocol === 'https:' || url.protocol.startsWith('ws')) && !LOCAL_HOSTS.has(url.hostname)) {
    fail(`request to a host other than localhost: ${route.request().method()} ${url.href}`);
    return route.abort('blockedbyclient');
  }
  return route.continue();
});
context.on('request', (req) => requests.push(`${req.method()} ${req.url()}`));
context.on('requestfailed', (req) => {
  fail(`request failed: ${req.method()} ${req.url()} (${req.failure()?.errorText})`);
});
context.on('response', (res) => {
  if (res.status() >= 400) fail(`HTTP ${res.status()} for ${res.request().method()} ${res.url()}`);
});
const watch = (page) => {
  page.on('console', (msg) => {
    if (msg.type() === 'error') fail(`console error on ${page.url()}: ${msg.text()}`);
    else if (msg.type() === 'warning') console.log(`     (console warning: ${msg.text().split('\n')[0]})`);
  });
  page.on('pageerror', (err) => fail(`uncaught exception on ${page.url()}: ${err.message}`));
};

const page = context.pages()[0] || (await context.newPage());
watch(page);

const shot = async (name, target = page) => {
  const file = join(artifactDir, `${name}.png`);
  await target.screenshot({ path: file, fullPage: true });
  console.log(`     screenshot ${file}`);
};

// One operation's block: the method badge and the path as Swagger UI renders them.
const operation = (method, path) =>
  page
    .locator('.opblock')
    .filter({ has: page.locator('.opblock-summary-method', { hasText: new RegExp(`^${method}$`) }) })
    .filter({ has: page.locator(`.opblock-summary-path[data-path="${path}"]`) });

async function expectOperations(slug) {
  const { ops } = SERVICES[slug];
  await operation(...ops[0]).first().waitFor();
  for (const [method, path] of ops) {
    const n = await operation(method, path).count();
    check(n === 1, `${slug}: ${method} ${path} is listed`);
  }
  // Every listed operation has a summary line next to its path.
  const blocks = page.locator('.opblock');
  const total = await blocks.count();
  for (let i = 0; i < total; i += 1) {
    const block = blocks.nth(i);
    const method = (await block.locator('.opblock-summary-method').innerText()).trim();
    const path = await block.locator('.opblock-summary-path').getAttribute('data-path');
    const summary = (await block.locator('.opblock-summary-description').allInnerTexts()).join('').trim();
    if (!summary) note(`${slug}: ${method} ${path} has no summary in the page`);
  }
  console.log(`     ${slug}: ${total} operation(s) listed`);
}

// Selects a document in the top bar and waits until its operations are listed.
async function selectDocument(slug) {
  await page.locator('.topbar select').selectOption({ label: slug });
  await page.locator('.information-container .title').filter({ hasText: SERVICES[slug].title }).waitFor();
  await expectOperations(slug);
}

// Expands an operation, switches to "Try it out" (when not already on), fills it and executes
// it; returns the rendered status code, the rendered response body and the raw response.
let executed = 0;
async function tryItOut(method, path, { pathParams = {}, query = {}, headers = {}, body } = {}) {
  const op = operation(method, path);
  executed += 1;
  const requestId = `browser-${run}-${executed}`;
  headers = { 'X-Request-Id': requestId, ...headers };
  await op.locator('.opblock-summary-control').click();
  const tryButton = op.locator('button.try-out__btn');
  await tryButton.waitFor();
  if (/try it out/i.test(await tryButton.innerText())) await tryButton.click();
  // What the page filled in by itself (parameter examples), before anything is typed.
  const prefilled = {};
  for (const row of await op.locator('tr[data-param-name]').all()) {
    const input = row.locator('input');
    if (await input.count()) prefilled[await row.getAttribute('data-param-name')] = await input.first().inputValue();
  }
  for (const name of ['Idempotency-Key', 'X-Request-Id']) {
    if (prefilled[name]) note(`${method} ${path}: the page pre-fills the ${name} header with the fixed example "${prefilled[name]}"`);
  }
  for (const [name, value] of Object.entries(pathParams)) {
    await op.locator(`tr[data-param-name="${name}"][data-param-in="path"] input`).fill(String(value));
  }
  for (const [name, value] of Object.entries(query)) {
    await op.locator(`tr[data-param-name="${name}"][data-param-in="query"] input`).fill(String(value));
  }
  for (const [name, value] of Object.entries(headers)) {
    const input = op.locator(`tr[data-param-name="${name}"][data-param-in="header"] input`);
    if (name === 'X-Request-Id' && (await input.count()) === 0) {
      fail(`${method} ${path}: the document does not offer the X-Request-Id header`);
      continue;
    }
    await input.fill(String(value));
  }
  if (body !== undefined) {
    const editor = op.locator('textarea.body-param__text');
    await editor.fill(JSON.stringify(body, null, 2));
  }
  const wanted = (res) =>
    res.request().method() === method && new URL(res.url()).pathname.startsWith(path.replace(/\{[^}]+\}.*$/, ''));
  const [response] = await Promise.all([page.waitForResponse(wanted), op.locator('button.execute').click()]);
  const live = op.locator('.live-responses-table tr.response');
  await live.locator('.response-col_status').waitFor();
  const status = (await live.locator('.response-col_status').innerText()).trim();
  const shown = (await live.locator('.response-col_description pre').first().innerText()).trim();
  let shownJson;
  try {
    shownJson = JSON.parse(shown);
  } catch {
    shownJson = undefined;
  }
  const headersShown = (await live.locator('.response-col_description').innerText()).toLowerCase();
  check(headersShown.includes(`x-request-id: ${requestId}`), `${method} ${path}: the answer carries the X-Request-Id typed in (${requestId})`);
  return { op, status, shown, shownJson, response, prefilled, headersShown };
}

// "Authorize" in the top of the page: the token goes into the user_token scheme's field; the
// page keeps it (persistAuthorization) for every document it shows.
async function authorize(token) {
  await page.locator('.auth-wrapper button.authorize').click();
  const dialog = page.locator('.dialog-ux .modal-ux');
  await dialog.waitFor();
  const scheme = dialog.locator('.auth-container').filter({ hasText: 'user_token' });
  await scheme.locator('input').fill(token);
  await scheme.locator('button.authorize').click();
  await scheme.locator('button', { hasText: 'Logout' }).waitFor();
  ok('the Authorize dialog accepted the token (user_token)');
  await dialog.locator('button.close-modal').click();
}

const run = `${Date.now().toString(36)}${Math.floor(Math.random() * 1e6).toString(36)}`;
const password = `browser-password-${run}`;
let userId;
let orderId;

await step('GET / in the browser lands on /docs/', async () => {
  await page.goto(`${BASE}/`);
  check(new URL(page.url()).pathname === '/docs/', `the browser ends on /docs/ (${page.url()})`);
  const select = page.locator('.topbar select');
  await select.waitFor();
  const labels = (await select.locator('option').allInnerTexts()).map((s) => s.trim());
  check(JSON.stringify(labels) === JSON.stringify(SLUGS), `the selector offers ${SLUGS.join(', ')} (${labels.join(', ')})`);
  check((await page.locator('.swagger-ui img[src*="validator"], .swagger-ui a[href*="validator"]').count()) === 0, 'no validator badge');
});

await step('users: select, POST /users through "Try it out"', async () => {
  await selectDocument('users');
  const username = `browser_${run}`;
  const email = `browser.${run}@example.com`;
  const result = await tryItOut('POST', '/users', {
    // A fresh key: the example value Swagger UI fills in would replay or clash across runs.
    headers: { 'Idempotency-Key': `browser-user-${run}` },
    body: { username, email, password, first_name: 'Browser', last_name: 'Test' },
  });
  check(result.status === '201', `POST /users shows 201 (${result.status})`);
  const raw = await result.response.json();
  userId = raw.id;
  check(Number.isInteger(userId) && userId > 0, `POST /users answered a new id (${userId})`);
  check(result.shownJson && result.shownJson.id === userId && result.shownJson.username === username,
    `the rendered response shows the new user (id ${result.shownJson?.id}, ${result.shownJson?.username})`);
  check(result.headersShown.includes(`location: /users/${userId}`), `the rendered response headers show location: /users/${userId}`);
  check(!result.shown.includes(password), 'the password is not in the answer');

  const signedIn = await tryItOut('POST', '/users/tokens', { body: { username, password } });
  check(signedIn.status === '200', `POST /users/tokens shows 200 (${signedIn.status})`);
  const token = (await signedIn.response.json()).access_token;
  check(typeof token === 'string' && token.split('.').length === 3, 'sign-in answered a JWT');
  await authorize(token);
  const me = await tryItOut('GET', '/users/{id}', { pathParams: { id: userId } });
  check(me.status === '200' && me.shownJson?.id === userId, `GET /users/{id} with the token shows the user (${me.status})`);
  await shot('users');
});

await step('billing: select, POST /billing/accounts/{user_id}/deposit', async () => {
  await selectDocument('billing');
  if (!userId) throw new Error('no user to deposit for');
  const result = await tryItOut('POST', '/billing/accounts/{user_id}/deposit', {
    pathParams: { user_id: userId },
    body: { amount: 100000, reference: `browser-top-up-${run}` },
  });
  check(result.status === '200', `deposit shows 200 (${result.status})`);
  check(result.shownJson && result.shownJson.user_id === userId && result.shownJson.balance === 100000,
    `the rendered response shows balance 100000 for user ${userId} (${result.shown.replace(/\s+/g, ' ')})`);
  await shot('billing');
});

await step('orders: select, POST /orders', async () => {
  await selectDocument('orders');
  if (!userId) throw new Error('no user to order for');
  const result = await tryItOut('POST', '/orders', {
    headers: { 'Idempotency-Key': `browser-order-${run}` },
    body: { user_id: userId, price: 40000 },
  });
  check(result.status === '201', `POST /orders shows 201 (${result.status})`);
  orderId = result.shownJson?.id;
  check(result.shownJson && result.shownJson.user_id === userId && result.shownJson.status === 'paid' && result.shownJson.failure_reason === null,
    `the rendered order is paid (${result.shown.replace(/\s+/g, ' ')})`);
  check(await result.op.locator('.live-responses-table').getByText('"paid"').count() > 0, 'the page shows "paid"');
  check(result.headersShown.includes(`location: /orders/${orderId}`), `the rendered response headers show location: /orders/${orderId}`);
  await shot('orders');
  if (committedShot) {
    // The executed POST /orders in one 1280x900 view: Execute, the curl line (POST .../orders and
    // its body), the request URL and the rendered 201 answer with its headers, the end of the
    // answer at the bottom of the viewport. (The whole block, title bar included, is ~1700 px.)
    const answer = await result.op.locator('.live-responses-table tr.response').boundingBox();
    const y = await page.evaluate(() => window.scrollY);
    await page.evaluate((t) => window.scrollTo(0, t), Math.max(0, y + answer.y + answer.height + 16 - 900));
    await page.screenshot({ path: committedShot });
    console.log(`     screenshot ${committedShot}`);
  }
});

await step('notifications: select, GET /notifications', async () => {
  await selectDocument('notifications');
  if (!userId) throw new Error('no user to list letters for');
  const result = await tryItOut('GET', '/notifications', { query: { user_id: userId } });
  check(result.status === '200', `GET /notifications shows 200 (${result.status})`);
  const letters = result.shownJson || [];
  check(letters.length === 1 && letters[0].kind === 'order_paid' && letters[0].order_id === orderId,
    `the rendered list holds the order_paid letter for order ${orderId} (${letters.map((l) => `${l.kind}#${l.order_id}`).join(', ')})`);
  await shot('notifications');
});

for (const slug of SLUGS) {
  await step(`/docs/${slug}/ shows its own document`, async () => {
    await page.goto(`${BASE}/docs/${slug}/`);
    await page.locator('.information-container .title').filter({ hasText: SERVICES[slug].title }).waitFor();
    await expectOperations(slug);
    const specLink = await page.locator('.information-container .link, .information-container a[href$="openapi.json"]').first().getAttribute('href').catch(() => null);
    check(specLink === null || specLink.endsWith(`/docs/${slug}/openapi.json`), `/docs/${slug}/ loads /docs/${slug}/openapi.json (${specLink})`);
    await shot(`page-${slug}`);
  });
}

// A moment for late console messages and requests, then the verdict.
await page.waitForTimeout(300);
await context.close();
rmSync(profile, { recursive: true, force: true });

const foreign = requests.filter((r) => !LOCAL_HOSTS.has(new URL(r.split(' ')[1]).hostname) && /^https?:|^wss?:/.test(r.split(' ')[1]));
check(foreign.length === 0, `every one of ${requests.length} request(s) went to ${ORIGIN}`);

console.log('');
if (notes.length) console.log(`${notes.length} note(s) above (not failures)`);
if (problems.length) {
  console.log(`swagger ui: ${problems.length} problem(s), ${checks} check(s) passed:`);
  for (const p of problems) console.log(`  - ${p}`);
  process.exit(1);
}
console.log(`swagger ui: all ${checks} checks passed`);
