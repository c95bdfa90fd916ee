// Tests of relay-client.js with Node's test runner: `node --test test/`.
//
// The first part needs nothing: a fake fetch answers, and the waits are
// recorded instead of slept. The second part runs against a real relay and
// the fake Jira, which internal/opstest (TestJSClient) starts and names in
// the environment: RELAY_URL, REGISTRATION_TOKEN, JIRA_URL, FAKEJIRA_CONTROL,
// ATTACHMENT_ID, ATTACHMENT_SHA256; without them that part is skipped.
import { test } from 'node:test';
import assert from 'node:assert/strict';
import { createHash, randomUUID } from 'node:crypto';
import { RelayClient, RelayError, parseRetryAfter } from '../relay-client.js';

// ---- a scripted fetch --------------------------------------------------------

function answer(status, body, headers = {}) {
  const h = new Headers(headers);
  if (body !== undefined && !h.has('Content-Type')) h.set('Content-Type', 'application/json');
  const text = body === undefined ? null : typeof body === 'string' ? body : JSON.stringify(body);
  return new Response(status === 204 || status === 304 ? null : text, { status, headers: h });
}

const relayError = (status, code, headers) => answer(status, { error: { code, message: `${code} happened` } }, headers);

/** A client whose fetch plays `script` (answers or Errors, in order) and records every call and wait. */
function scripted(script, opts = {}) {
  const calls = [];
  const waits = [];
  const c = new RelayClient({
    baseUrl: 'https://relay.test/', instanceId: 'abcdefghijklmnopqrstuvwxyz', clientKey: 'ck_secret',
    fetch: async (url, init) => {
      calls.push({ url: new URL(url), init });
      const next = script.length > 1 ? script.shift() : script[0];
      if (next instanceof Error) throw next;
      return typeof next === 'function' ? next(url, init) : next.clone();
    },
    sleep: async (ms) => { waits.push(ms); },
    random: () => 0.5,
    ...opts,
  });
  return { c, calls, waits };
}

// ---- retries -------------------------------------------------------------------

test('429 is retried after Retry-After, scaled by the jitter', async () => {
  const { c, calls, waits } = scripted([
    relayError(429, 'rate_limited_instance', { 'Retry-After': '2' }),
    relayError(429, 'rate_limited_instance', { 'Retry-After': '3' }),
    answer(200, { a: 1 }, { ETag: '"7"' }),
  ]);
  assert.deepEqual(await c.getConfig(), { a: 1 });
  assert.equal(calls.length, 3);
  assert.deepEqual(waits, [2000, 3000]); // random 0.5 → factor 1.0
});

test('the jitter stays within 0.7 to 1.3', async () => {
  for (const [r, want] of [[0, 700], [0.999999, 1300], [0.25, 850]]) {
    const { c, waits } = scripted([relayError(503, 'store_unavailable', { 'Retry-After': '1' }), answer(200, {})], { random: () => r });
    await c.getConfig();
    assert.equal(waits.length, 1);
    assert.ok(Math.abs(waits[0] - want) <= 1, `random ${r}: waited ${waits[0]}, want ${want}`);
  }
});

test('at most 4 retries, then the RelayError of the last answer', async () => {
  const { c, calls, waits } = scripted([relayError(503, 'upstream_circuit_open', { 'Retry-After': '1' })]);
  await assert.rejects(c.getConfig(), (e) => {
    assert.ok(e instanceof RelayError);
    assert.equal(e.status, 503);
    assert.equal(e.code, 'upstream_circuit_open');
    assert.equal(e.message, 'upstream_circuit_open happened');
    assert.equal(e.retryAfter, 1);
    return true;
  });
  assert.equal(calls.length, 5);
  assert.equal(waits.length, 4);
});

test('maxRetries is configurable, 0 switches retries off', async () => {
  const { c, calls } = scripted([relayError(429, 'rate_limited_ip', { 'Retry-After': '1' })], { maxRetries: 0 });
  await assert.rejects(c.getConfig(), { status: 429, code: 'rate_limited_ip' });
  assert.equal(calls.length, 1);
});

test('no other 4xx is retried', async () => {
  for (const [status, code] of [[400, 'invalid_json'], [401, 'unauthorized'], [403, 'forbidden'], [404, 'instance_not_found'],
    [408, 'body_timeout'], [409, 'conflict'], [412, 'precondition_failed'], [413, 'attachment_too_large'], [415, 'unsupported_media_type']]) {
    const { c, calls, waits } = scripted([relayError(status, code, { 'Retry-After': '1' }), answer(200, {})]);
    await assert.rejects(c.getConfig(), { status, code });
    assert.equal(calls.length, 1, `${status} was retried`);
    assert.equal(waits.length, 0);
  }
});

test('without Retry-After the waits double from retryBaseMs', async () => {
  const { c, waits } = scripted([relayError(503, 'store_unavailable')], { retryBaseMs: 100 });
  await assert.rejects(c.getConfig(), { status: 503 });
  assert.deepEqual(waits, [100, 200, 400, 800]);
});

test('Retry-After as an HTTP date', async () => {
  const now = Date.parse('2030-01-01T00:00:00Z');
  const { c, waits } = scripted([
    relayError(429, 'rate_limited_jira_cooldown', { 'Retry-After': 'Tue, 01 Jan 2030 00:00:05 GMT' }), answer(200, {}),
  ], { now: () => now });
  await c.getConfig();
  assert.deepEqual(waits, [5000]);
  assert.equal(parseRetryAfter('Tue, 01 Jan 2030 00:00:05 GMT', now), 5000);
  assert.equal(parseRetryAfter('7'), 7000);
  assert.equal(parseRetryAfter('soon'), undefined);
  assert.equal(parseRetryAfter(null), undefined);
});

test('a wait longer than maxRetryDelayMs is not made: the error says how long', async () => {
  const { c, calls } = scripted([relayError(429, 'rate_limited_jira_cooldown', { 'Retry-After': '3600' })]);
  await assert.rejects(c.getConfig(), { status: 429, retryAfter: 3600 });
  assert.equal(calls.length, 1);
});

test('no answer: GET, PUT and DELETE are retried, POST is not', async () => {
  const { c, calls } = scripted([new TypeError('fetch failed'), answer(200, { mappings: [], next: '' })]);
  assert.deepEqual(await c.findMappings({ mailId: 'm' }), { mappings: [], next: '' });
  assert.equal(calls.length, 2);

  const post = scripted([new TypeError('Failed to fetch'), answer(201, {})]);
  await assert.rejects(post.c.linkMapping({ mailId: 'm', userId: 'u', jira: { id: '1', key: 'A-1' } }),
    (e) => e instanceof RelayError && e.status === 0 && e.code === 'network_error');
  assert.equal(post.calls.length, 1);
});

test('an upload is retried on 429 and 503 with the same base64 body', async () => {
  const { c, calls } = scripted([
    relayError(503, 'upstream_circuit_open', { 'Retry-After': '1' }),
    answer(429, { errorMessages: ['Rate limit exceeded.'] }, { 'Retry-After': '1' }),
    answer(200, [{ id: '10000', filename: 'a.pdf', size: 3 }]),
  ]);
  const out = await c.uploadAttachment({ issueIdOrKey: 'OPS-1', base64: 'YWJj', filename: 'a.pdf', jiraAuthorization: 'Bearer t' });
  assert.equal(out[0].id, '10000');
  assert.equal(calls.length, 3);
  for (const call of calls) assert.equal(call.init.body, 'YWJj');
});

// ---- requests --------------------------------------------------------------------

test('uploadAttachment sends the base64 string as it is, with ?encoding=base64', async () => {
  const { c, calls } = scripted([answer(200, [{ id: '10000', filename: 'r é.pdf', size: 4 }])]);
  const b64 = 'JVBE\r\nRg==';
  await c.uploadAttachment({ issueIdOrKey: 'OPS-1', base64: b64, filename: 'r é+1.pdf', contentType: 'application/pdf', jiraAuthorization: 'Basic eDp5' });
  const { url, init } = calls[0];
  assert.equal(init.method, 'POST');
  assert.equal(url.pathname, '/v1/instances/abcdefghijklmnopqrstuvwxyz/issues/OPS-1/attachments');
  assert.equal(url.searchParams.get('encoding'), 'base64');
  assert.equal(url.searchParams.get('filename'), 'r é+1.pdf');
  assert.match(url.search, /filename=r\+%C3%A9%2B1\.pdf/);
  assert.equal(init.body, b64, 'the body is the base64 text, not decoded');
  assert.equal(init.headers['Content-Type'], 'application/pdf');
  assert.equal(init.headers.Authorization, 'Basic eDp5');
  assert.equal(init.headers['X-Relay-Key'], 'ck_secret');
  assert.equal(init.cache, 'no-store');
  await assert.rejects(c.uploadAttachment({ issueIdOrKey: 'OPS-1', base64: new Uint8Array(1), filename: 'a', jiraAuthorization: 'x' }), TypeError);
});

test('getConfig keeps the document and its ETag, and sends If-None-Match', async () => {
  const doc = { fields: ['summary'] };
  const { c, calls } = scripted([answer(200, doc, { ETag: '"41"' }), answer(304, undefined, { ETag: '"41"' }), answer(200, { v: 2 }, { ETag: '"42"' })]);
  const first = await c.getConfig();
  assert.deepEqual(first, doc);
  assert.equal(calls[0].init.headers['If-None-Match'], undefined);
  assert.equal(c.configETag, '"41"');
  const second = await c.getConfig();
  assert.equal(second, first, 'a 304 gives the kept document');
  assert.equal(calls[1].init.headers['If-None-Match'], '"41"');
  assert.deepEqual(await c.getConfig(), { v: 2 });
  assert.equal(c.configETag, '"42"');
});

test('ids are percent-encoded in paths and queries', async () => {
  const { c, calls } = scripted([answer(201, { userId: 'u/1+=' }), answer(200, { mappings: [], next: '' }), answer(200, { deleted: 1 })]);
  const { created } = await c.putUser('u/1+=', { name: 'A', email: 'a@example.com' });
  assert.equal(created, true);
  assert.equal(calls[0].url.pathname, '/v1/instances/abcdefghijklmnopqrstuvwxyz/users/u%2F1%2B%3D');
  assert.equal(calls[0].init.body, JSON.stringify({ name: 'A', email: 'a@example.com' }));
  await c.findMappings({ conversationId: 'AAQk/x+y=', userId: 'u 1', limit: 5 });
  assert.equal(calls[1].url.search, '?conversationId=AAQk%2Fx%2By%3D&userId=u+1&limit=5');
  await c.unlink({ mailId: '<a+b@c>', issueId: '10001' });
  assert.equal(calls[2].init.method, 'DELETE');
  assert.equal(calls[2].url.searchParams.get('mailId'), '<a+b@c>');
});

test('findMappings needs exactly one lookup', async () => {
  const { c, calls } = scripted([answer(200, { mappings: [], next: '' })]);
  await assert.rejects(c.findMappings({}), TypeError);
  await assert.rejects(c.findMappings({ mailId: 'a', issueKey: 'A-1' }), TypeError);
  assert.equal(calls.length, 0);
});

test('errors: the relay\'s code, Jira\'s messages, or the status', async () => {
  const cases = [
    [relayError(401, 'unauthorized'), { status: 401, code: 'unauthorized', message: 'unauthorized happened' }],
    [answer(404, { errorMessages: ['Issue does not exist.'], errors: {} }), { status: 404, code: 'jira_error', message: 'Issue does not exist.' }],
    [answer(502, '<html>bad gateway</html>', { 'Content-Type': 'text/html' }), { status: 502, code: 'http_502' }],
  ];
  for (const [res, want] of cases) {
    const { c } = scripted([res]);
    await assert.rejects(c.getUser('u'), (e) => {
      assert.ok(e instanceof RelayError && e instanceof Error);
      for (const [k, v] of Object.entries(want)) assert.equal(e[k], v, k);
      return true;
    });
  }
});

test('register sends deploymentType and cloudId only when given', async () => {
  const sent = [];
  const fetch = async (url, init) => {
    sent.push({ url: new URL(url), init, body: JSON.parse(init.body) });
    return answer(201, { instanceId: 'abcdefghijklmnopqrstuvwxyz', clientKey: 'ck', adminKey: 'ak', instance: {} });
  };
  const base = { baseUrl: 'https://relay.test/', jiraVersion: '9.12.4', addinVersion: '1.4.0', fetch };
  await RelayClient.register({ ...base, url: 'https://acme.atlassian.net' });
  await RelayClient.register({ ...base, url: 'https://jira.corp.example.com/jira', deploymentType: 'DataCenter', registrationToken: 'rt' });
  await RelayClient.register({ ...base, url: 'https://acme.atlassian.net', deploymentType: 'Cloud', cloudId: '3F1C2B9A-5D4E-4F6A-8B7C-9D0E1F2A3B4C' });
  await RelayClient.register({ ...base, url: 'https://acme.atlassian.net', deploymentType: undefined, cloudId: null });
  await RelayClient.register({ ...base, url: 'https://acme.atlassian.net', deploymentType: '' }); // the relay's to refuse
  assert.deepEqual(sent.map((s) => s.body), [
    { url: 'https://acme.atlassian.net', jiraVersion: '9.12.4', addinVersion: '1.4.0' },
    { url: 'https://jira.corp.example.com/jira', deploymentType: 'DataCenter', jiraVersion: '9.12.4', addinVersion: '1.4.0' },
    { url: 'https://acme.atlassian.net', deploymentType: 'Cloud', cloudId: '3F1C2B9A-5D4E-4F6A-8B7C-9D0E1F2A3B4C', jiraVersion: '9.12.4', addinVersion: '1.4.0' },
    { url: 'https://acme.atlassian.net', jiraVersion: '9.12.4', addinVersion: '1.4.0' },
    { url: 'https://acme.atlassian.net', deploymentType: '', jiraVersion: '9.12.4', addinVersion: '1.4.0' },
  ]);
  for (const s of sent) {
    assert.equal(s.init.method, 'POST');
    assert.equal(s.url.href, 'https://relay.test/v1/instances');
    assert.equal(s.init.headers['X-Relay-Key'], undefined, 'registration sends no key');
  }
  assert.equal(sent[1].init.headers['X-Registration-Token'], 'rt');
});

test('attachments of a Server or Data Center instance: RelayError 409 attachments_direct, not retried', async () => {
  const direct = () => relayError(409, 'attachments_direct');
  const { c, calls, waits } = scripted([direct()]);
  await assert.rejects(c.uploadAttachment({ issueIdOrKey: 'ITSM-1', base64: 'aGk=', filename: 'a.txt', jiraAuthorization: 'Bearer t' }), (e) => {
    assert.ok(e instanceof RelayError);
    assert.equal(e.status, 409);
    assert.equal(e.code, 'attachments_direct');
    assert.equal(e.body.error.code, 'attachments_direct');
    return true;
  });
  await assert.rejects(c.downloadAttachment({ attachmentId: '10001', jiraAuthorization: 'Bearer t' }),
    (e) => e instanceof RelayError && e.status === 409 && e.code === 'attachments_direct');
  assert.equal(calls.length, 2);
  assert.deepEqual(waits, []);
});

test('the constructor needs baseUrl, instanceId and clientKey', () => {
  assert.throws(() => new RelayClient({ baseUrl: 'https://r', instanceId: 'i' }), TypeError);
});

// ---- against a real relay ----------------------------------------------------------

const env = process.env;
const live = { skip: env.RELAY_URL ? false : 'RELAY_URL is not set (internal/opstest sets it)' };

// Each live test registers its own site: the fake Jira's URL with a path of
// its own (a site registers once), or the plain URL where Jira is called.
function register(url, more = {}) {
  return RelayClient.register({
    baseUrl: env.RELAY_URL, url, jiraVersion: '1001.0.0', addinVersion: '1.4.0', registrationToken: env.REGISTRATION_TOKEN, ...more,
  });
}

async function fault(spec) {
  const res = await fetch(env.FAKEJIRA_CONTROL, { method: 'POST', body: JSON.stringify(spec) });
  assert.equal(res.status, 204, 'fake Jira control');
}

test('live: register, then the same site again is a 409', live, async () => {
  const reg = await register(env.JIRA_URL + '/ex/jira/live1');
  assert.match(reg.instanceId, /^[a-z2-7]{26}$/);
  assert.ok(reg.clientKey && reg.adminKey);
  assert.equal(reg.instance.url, env.JIRA_URL + '/ex/jira/live1');
  assert.equal(reg.instance.deploymentType, 'Cloud', 'no deploymentType sent: a Cloud site');
  assert.equal(reg.instance.cloudId, undefined);
  await assert.rejects(register(env.JIRA_URL + '/ex/jira/live1/'), { status: 409, code: 'conflict' });
  await assert.rejects(RelayClient.register({ baseUrl: env.RELAY_URL, url: 'https://x.atlassian.net', jiraVersion: '1', addinVersion: '1' }),
    { status: 401, code: 'unauthorized' });
});

test('live: users, configuration by ETag, mappings, unlink, error reports', live, async (t) => {
  const statuses = [];
  const reg = await register(env.JIRA_URL + '/ex/jira/live2');
  const c = new RelayClient({
    baseUrl: env.RELAY_URL, instanceId: reg.instanceId, clientKey: reg.clientKey,
    fetch: async (u, i) => { const r = await fetch(u, i); statuses.push(r.status); return r; },
  });
  assert.equal((await c.putUser('u/1', { name: 'Ada', email: 'ada@example.com' })).created, true);
  assert.equal((await c.putUser('u/1', { name: 'Ada L.', email: 'ada@example.com' })).created, false);
  assert.equal((await c.getUser('u/1')).name, 'Ada L.');
  await assert.rejects(c.getUser('nobody'), { status: 404, code: 'user_not_found' });

  assert.deepEqual(await c.getConfig(), {});
  const put = await fetch(`${env.RELAY_URL}/v1/instances/${reg.instanceId}/config`, {
    method: 'PUT', headers: { 'X-Relay-Key': reg.adminKey, 'Content-Type': 'application/json' }, body: '{"fields":["summary"]}',
  });
  assert.equal(put.status, 200);
  statuses.length = 0;
  const doc = await c.getConfig();
  assert.deepEqual(doc, { fields: ['summary'] });
  assert.equal(c.configETag, put.headers.get('ETag'));
  assert.equal(await c.getConfig(), doc);
  assert.deepEqual(statuses, [200, 304]);

  const conv = 'AAQkADQ2/x+y=';
  for (const [mail, id, key] of [['<a@x>', '10001', 'OPS-1'], ['<b@x>', '10002', 'OPS-2'], ['<c@x>', '10001', 'OPS-1']]) {
    const { created } = await c.linkMapping({ conversationId: conv, mailId: mail, userId: 'u/1', app: 'outlook', jira: { id, key } });
    assert.equal(created, true);
  }
  assert.equal((await c.linkMapping({ conversationId: conv, mailId: '<a@x>', userId: 'u/1', jira: { id: '10001', key: 'OPS-1' } })).created, false);
  const page = await c.findMappings({ conversationId: conv, limit: 2 });
  assert.equal(page.mappings.length, 2);
  assert.ok(page.next);
  const all = [];
  for await (const m of c.iterateMappings({ conversationId: conv, limit: 1 })) all.push(m);
  assert.equal(all.length, 3);
  assert.deepEqual(new Set(all.map((m) => m.jira.key)), new Set(['OPS-1', 'OPS-2']));
  assert.equal((await c.findMappings({ issueKey: 'OPS-1', userId: 'u/1' })).mappings.length, 2);
  assert.deepEqual(await c.unlink({ mailId: '<b@x>', issueId: '10002' }), { deleted: 1 });
  await assert.rejects(c.unlink({ mailId: '<b@x>', issueId: '10002' }), { status: 404, code: 'mapping_not_found' });

  await assert.rejects(c.reportError({ message: 'boom' }), { status: 403, code: 'error_reports_off' });

  const wrong = new RelayClient({ baseUrl: env.RELAY_URL, instanceId: reg.instanceId, clientKey: 'nope' });
  await assert.rejects(wrong.getConfig(), { status: 401, code: 'unauthorized' });
  t.diagnostic(`statuses ${statuses.join(',')}`);
});

test('live: upload a base64 attachment, download one, Jira\'s and the relay\'s refusals', live, async () => {
  const reg = await register(env.JIRA_URL);
  const retries = [];
  const c = new RelayClient({ baseUrl: env.RELAY_URL, instanceId: reg.instanceId, clientKey: reg.clientKey, onRetry: (r) => retries.push(r) });
  const file = Buffer.from('hello from the add-in, '.repeat(5000));
  const base64 = file.toString('base64').replace(/(.{76})/g, '$1\r\n'); // MIME-style lines
  const out = await c.uploadAttachment({ issueIdOrKey: 'OPS-7', base64, filename: 'notes é.txt', contentType: 'text/plain', jiraAuthorization: 'Basic YWRhQGV4YW1wbGUuY29tOnRva2Vu' });
  assert.equal(out.length, 1);
  assert.equal(out[0].filename, 'notes é.txt');
  assert.equal(out[0].size, file.length);

  // Jira answers 429 with Retry-After: 1 once; the relay relays it, then holds the
  // instance in a cool-down; the client waits and gets through.
  await fault({ kind: '429', retryAfter: '1', count: 1 });
  const started = Date.now();
  const again = await c.uploadAttachment({ issueIdOrKey: 'OPS-7', base64: 'aGk=', filename: 'hi.txt', contentType: 'text/plain', jiraAuthorization: 'Bearer tok' });
  assert.equal(again[0].size, 2);
  assert.ok(retries.length >= 1 && retries.every((r) => r.status === 429), JSON.stringify(retries));
  assert.ok(Date.now() - started >= 650, `retried after ${Date.now() - started} ms, before Retry-After`);

  // Jira's 500 is not retried.
  await fault({ kind: '500', count: 1 });
  retries.length = 0;
  await assert.rejects(c.uploadAttachment({ issueIdOrKey: 'OPS-7', base64: 'aGk=', filename: 'hi.txt', jiraAuthorization: 'Bearer tok' }),
    { status: 500, code: 'jira_error' });
  assert.equal(retries.length, 0);

  await assert.rejects(c.uploadAttachment({ issueIdOrKey: 'not an issue', base64: 'aGk=', filename: 'a', jiraAuthorization: 'x' }),
    { status: 400, code: 'invalid_issue' });
  await assert.rejects(c.uploadAttachment({ issueIdOrKey: 'OPS-7', base64: '!!not base64!!', filename: 'a', jiraAuthorization: 'x' }),
    { status: 400, code: 'invalid_base64' });

  const res = await c.downloadAttachment({ attachmentId: env.ATTACHMENT_ID, jiraAuthorization: 'Bearer tok' });
  assert.equal(res.status, 200);
  const sha = createHash('sha256').update(Buffer.from(await res.arrayBuffer())).digest('hex');
  assert.equal(sha, env.ATTACHMENT_SHA256);
  const part = await c.downloadAttachment({ attachmentId: env.ATTACHMENT_ID, jiraAuthorization: 'Bearer tok', range: 'bytes=0-9' });
  assert.equal(part.status, 206);
  assert.equal((await part.arrayBuffer()).byteLength, 10);
  await assert.rejects(c.downloadAttachment({ attachmentId: '424242', jiraAuthorization: 'Bearer tok' }), { status: 404, code: 'jira_error' });
});

test('live: a Cloud site with its cloud id; deployment types and cloud ids are checked', live, async () => {
  const cloudId = randomUUID().toUpperCase();
  const reg = await register(env.JIRA_URL + '/ex/jira/live3', { deploymentType: 'Cloud', cloudId });
  assert.equal(reg.instance.deploymentType, 'Cloud');
  assert.equal(reg.instance.cloudId, cloudId.toLowerCase());
  await assert.rejects(register(env.JIRA_URL + '/ex/jira/live3b', { cloudId: cloudId.toLowerCase() }), { status: 409, code: 'cloud_id_taken' });
  await assert.rejects(register(env.JIRA_URL + '/ex/jira/live3b', { cloudId: 'acme' }), { status: 400, code: 'invalid_field' });
  for (const deploymentType of ['server', 'DATACENTER', 'Data Center', '']) {
    await assert.rejects(register('https://jira.corp.example.com/live3', { deploymentType }), { status: 400, code: 'invalid_field' }, deploymentType);
  }
  await assert.rejects(register('https://jira.corp.example.com/live3', { deploymentType: 'Server', cloudId: randomUUID() }),
    { status: 400, code: 'invalid_field' });
  // A Cloud site's URL must pass the relay's --allowed-upstreams.
  await assert.rejects(register('https://jira.corp.example.com/live3'), { status: 400, code: 'invalid_url' });
});

test('live: Server and Data Center tenants keep data; their attachments are 409 attachments_direct', live, async () => {
  // Internal URLs the relay never connects to (and which do not exist).
  for (const [deploymentType, url, want] of [
    ['Server', 'HTTPS://Jira.Corp.Example.com:443/live-server/', 'https://jira.corp.example.com/live-server'],
    ['DataCenter', 'http://jira-dc.corp.example.com:8080/live-dc', 'http://jira-dc.corp.example.com:8080/live-dc'],
  ]) {
    const reg = await register(url, { deploymentType });
    assert.equal(reg.instance.deploymentType, deploymentType);
    assert.equal(reg.instance.url, want);
    assert.equal(reg.instance.cloudId, undefined);
    await assert.rejects(register(want, { deploymentType: 'Server' }), { status: 409, code: 'conflict' });

    const retries = [];
    const c = new RelayClient({ baseUrl: env.RELAY_URL, instanceId: reg.instanceId, clientKey: reg.clientKey, onRetry: (r) => retries.push(r) });
    assert.equal((await c.putUser('u1', { name: 'Ravi', email: 'ravi@corp.example.com' })).created, true);
    assert.deepEqual(await c.getConfig(), {});
    assert.equal((await c.linkMapping({ conversationId: 'conv', mailId: '<m@corp>', userId: 'u1', jira: { id: '10001', key: 'ITSM-1' } })).created, true);
    assert.equal((await c.findMappings({ issueKey: 'ITSM-1' })).mappings.length, 1);

    await assert.rejects(c.uploadAttachment({ issueIdOrKey: 'ITSM-1', base64: 'aGk=', filename: 'hi.txt', contentType: 'text/plain', jiraAuthorization: 'Bearer tok' }),
      (e) => e instanceof RelayError && e.status === 409 && e.code === 'attachments_direct' && /Jira/.test(e.message));
    await assert.rejects(c.downloadAttachment({ attachmentId: '10001', jiraAuthorization: 'Bearer tok' }),
      { status: 409, code: 'attachments_direct' });
    assert.deepEqual(retries, []);
  }
});
