// The demo page in headless Chromium, served from another origin than the
// relay: CORS preflight, a file chosen in the page uploaded through the relay
// as base64 (read with FileReader, as Office.js gives attachments), the mail
// linked with the issue, the conversation's related issues shown; and the
// same page from an origin the relay does not list, which the browser must
// not let through.
//
//   node test/browser.mjs          (or node --test test/)
//
// internal/opstest (TestJSClient) starts the relay, the fake Jira and two
// static servers, names them in the environment, runs this file, and checks
// the fake Jira's record of the upload (SHA-256 of the bytes) against the
// file. Without DEMO_URL this test is skipped. Environment: DEMO_URL,
// DENIED_DEMO_URL, RELAY_URL, INSTANCE_ID, CLIENT_KEY, UPLOAD_FILE, ISSUE_KEY,
// ISSUE_ID, JIRA_AUTH, CONVERSATION_ID, MAIL_ID, USER_ID, RESULT_FILE,
// CHROMIUM (default /usr/bin/chromium), and SCREENSHOT (a PNG of the page).
import { test } from 'node:test';
import assert from 'node:assert/strict';
import { writeFileSync } from 'node:fs';
import { basename } from 'node:path';

const env = process.env;

// Chromium as root in a sandbox-less container, without any traffic of its
// own (this machine's network is closed).
const CHROMIUM_ARGS = [
  '--headless', '--no-sandbox', '--disable-gpu', '--disable-background-networking',
  '--disable-component-update', '--no-first-run', '--disable-sync', '--disable-quic',
  '--disable-default-apps', '--disable-extensions',
];

function fragment() {
  const p = new URLSearchParams({
    relay: env.RELAY_URL, instance: env.INSTANCE_ID, key: env.CLIENT_KEY,
    conversation: env.CONVERSATION_ID, mail: env.MAIL_ID, user: env.USER_ID,
    issueKey: env.ISSUE_KEY, issueId: env.ISSUE_ID, auth: env.JIRA_AUTH,
  });
  return `#${p}`;
}

/** Records the page's network traffic as the browser sees it, preflights included. */
async function recordNetwork(context, page) {
  const cdp = await context.newCDPSession(page);
  const requests = new Map(); // requestId -> {method, url, type, headers, status, responseHeaders, failed}
  cdp.on('Network.requestWillBeSent', (e) => {
    // A preflight has a request id of its own (its response comes with type
    // "Preflight").
    const early = requests.get(e.requestId); // ExtraInfo may come first
    requests.set(e.requestId, {
      ...early, method: e.request.method, url: e.request.url, type: e.type, headers: e.request.headers,
    });
  });
  // The headers actually sent (Origin and the like are added after
  // requestWillBeSent).
  cdp.on('Network.requestWillBeSentExtraInfo', (e) => {
    const r = requests.get(e.requestId);
    if (r) r.sentHeaders = lower(e.headers);
    else requests.set(e.requestId, { sentHeaders: lower(e.headers), url: '', method: '' });
  });
  cdp.on('Network.responseReceived', (e) => {
    const r = requests.get(e.requestId);
    if (r) Object.assign(r, { status: e.response.status, responseHeaders: lower(e.response.headers) });
  });
  cdp.on('Network.loadingFailed', (e) => {
    const r = requests.get(e.requestId);
    if (r && r.status === undefined) r.failed = e.errorText + (e.corsErrorStatus ? ` (${e.corsErrorStatus.corsError})` : '');
  });
  await cdp.send('Network.enable');
  return () => [...requests.values()];
}

function lower(h) {
  return Object.fromEntries(Object.entries(h || {}).map(([k, v]) => [k.toLowerCase(), v]));
}

async function waitState(page, selector) {
  await page.waitForSelector(`${selector}[data-state="done"], ${selector}[data-state="error"]`, { timeout: 30000 });
  return page.$eval(selector, (el) => ({ ...el.dataset, text: el.textContent }));
}

test('the demo page uploads through the relay and shows related issues, across origins', {
  skip: env.DEMO_URL ? false : 'DEMO_URL is not set (internal/opstest sets it)',
  timeout: 90000,
}, async (t) => {
  const { chromium } = await import('playwright-core');
  const browser = await chromium.launch({
    executablePath: env.CHROMIUM || '/usr/bin/chromium', headless: true, args: CHROMIUM_ARGS,
  });
  t.after(() => browser.close());
  const result = {};

  // ---- the allowed origin ----
  const context = await browser.newContext();
  const page = await context.newPage();
  const pageErrors = [];
  page.on('pageerror', (e) => pageErrors.push(String(e)));
  const traffic = await recordNetwork(context, page);
  const demo = new URL(env.DEMO_URL);
  await page.goto(env.DEMO_URL + fragment());
  assert.equal(await page.title(), 'jira-relay client demo');

  await page.setInputFiles('#file', env.UPLOAD_FILE);
  await page.click('#upload');
  const up = await waitState(page, '#upload-result');
  assert.equal(up.state, 'done', `upload: ${up.text}\n${await page.textContent('#log')}`);
  result.attachmentId = up.attachmentId;
  result.uploadText = up.text;
  assert.match(up.text, new RegExp(`attached ${basename(env.UPLOAD_FILE).replace(/[.*+?^${}()|[\]\\]/g, '\\$&')}`));

  await page.click('#link');
  const link = await waitState(page, '#link-result');
  assert.equal(link.state, 'done', `link: ${link.text}`);

  await page.click('#related');
  const rel = await waitState(page, '#related-list');
  assert.equal(rel.state, 'done', `related: ${rel.text}`);
  result.related = await page.$$eval('#related-list li', (lis) => lis.map((li) => li.dataset.key));
  assert.ok(result.related.includes(env.ISSUE_KEY), `related issues ${result.related}`);
  assert.deepEqual(pageErrors, []);
  if (env.SCREENSHOT) await page.screenshot({ path: env.SCREENSHOT, fullPage: true });

  // What crossed the wire: a preflight the relay allowed, then the upload.
  const net = traffic();
  const isUpload = (r) => r.url.startsWith(env.RELAY_URL) && r.url.includes('/attachments?');
  const preflight = net.find((r) => isUpload(r) && r.method === 'OPTIONS');
  assert.ok(preflight, `no CORS preflight of the upload was seen: ${JSON.stringify(net.map((r) => [r.method, r.type, r.url]))}`);
  assert.equal(preflight.status, 204);
  assert.equal(preflight.responseHeaders['access-control-allow-origin'], demo.origin);
  assert.match(preflight.responseHeaders['access-control-allow-headers'] || '', /X-Relay-Key/i);
  const post = net.find((r) => isUpload(r) && r.method === 'POST');
  assert.ok(post, 'the upload request was not seen');
  assert.equal(post.status, 200);
  assert.equal(post.sentHeaders?.origin, demo.origin);
  assert.equal(preflight.sentHeaders?.origin, demo.origin);
  assert.match(preflight.sentHeaders?.['access-control-request-headers'] || '', /x-relay-key/);
  assert.equal(post.responseHeaders['access-control-allow-origin'], demo.origin);
  assert.match(post.url, /[?&]encoding=base64(&|$)/);
  result.preflight = { status: preflight.status, allowOrigin: preflight.responseHeaders['access-control-allow-origin'] };
  result.requests = net.filter((r) => r.url.startsWith(env.RELAY_URL)).map((r) => `${r.method} ${new URL(r.url).pathname} ${r.status ?? r.failed}`);
  await context.close();

  // ---- an origin the relay does not list ----
  if (env.DENIED_DEMO_URL) {
    const ctx2 = await browser.newContext();
    const p2 = await ctx2.newPage();
    const traffic2 = await recordNetwork(ctx2, p2);
    await p2.goto(env.DENIED_DEMO_URL + fragment());
    await p2.setInputFiles('#file', env.UPLOAD_FILE);
    await p2.click('#upload');
    const denied = await waitState(p2, '#upload-result');
    assert.equal(denied.state, 'error', `an unlisted origin uploaded: ${denied.text}`);
    assert.equal(denied.status, '0', 'the browser, not the relay, refuses: no status reaches the page');
    assert.equal(denied.code, 'network_error');
    const pf = traffic2().find((r) => r.url.includes('/attachments?') && r.method === 'OPTIONS');
    assert.ok(pf, 'no preflight from the unlisted origin');
    assert.ok(pf.status === 403 || pf.failed, `preflight from an unlisted origin: ${JSON.stringify(pf)}`);
    assert.ok(!traffic2().some((r) => r.url.includes('/attachments?') && r.method === 'POST' && r.status), 'the upload itself was sent');
    result.denied = { text: denied.text, preflight: pf.status ?? pf.failed };
    await ctx2.close();
  }

  if (env.RESULT_FILE) writeFileSync(env.RESULT_FILE, JSON.stringify(result, null, 2));
  t.diagnostic(JSON.stringify(result));
});
