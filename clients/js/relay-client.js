// relay-client.js: the Outlook add-in's side of jira-relay, as one
// dependency-free ES module (browsers, Office webviews, Node.js 18+).
//
//   import { RelayClient, RelayError } from './relay-client.js';
//
//   const relay = new RelayClient({ baseUrl, instanceId, clientKey });
//   const config = await relay.getConfig();           // cached by ETag
//   await relay.putUser('1220', { name: 'Ada', email: 'ada@example.com' });
//   // The attachment as Office.js gives it (getAttachmentContentAsync: format base64):
//   const [att] = await relay.uploadAttachment({
//     issueIdOrKey: 'ITSM-34', base64: content, filename: 'report.pdf',
//     contentType: 'application/pdf', jiraAuthorization: `Bearer ${token}`,
//   });
//   await relay.linkMapping({ conversationId, mailId, userId: '1220',
//                            jira: { id: '10034', key: 'ITSM-34' } });
//   const { mappings } = await relay.findMappings({ conversationId });
//
// Every failure is a RelayError with the HTTP status (0 when the request never
// got an answer), the relay's error code (see docs/openapi.yaml) and a message.
// The relay carries attachments for Jira Cloud only: for a Jira Server or Data
// Center instance, uploadAttachment and downloadAttachment reject with
// RelayError 409 attachments_direct, which means "send the attachment to (or
// fetch it from) Jira Server/Data Center yourself"; every other method works
// for all three.
// Answers 429 and 503 are retried, at most 4 times by default, after the
// Retry-After the relay sends (or an exponential backoff), each wait scaled by
// a random factor from 0.7 to 1.3 so that many add-ins do not come back at
// once. No other 4xx is ever retried; a request that got no answer is retried
// only when repeating it is harmless (GET, PUT, DELETE).

/** The relay's answer to a failed request. */
export class RelayError extends Error {
  /**
   * @param {object} o
   * @param {number} o.status HTTP status; 0 when no answer came (network, CORS, abort).
   * @param {string} o.code The relay's error code (e.g. "unauthorized"), "jira_error"
   *   for an error Jira answered, "network_error", or "http_<status>".
   * @param {string} o.message For people.
   * @param {number} [o.retryAfter] Seconds the relay asked to wait (429, 503).
   * @param {any} [o.body] The decoded error body, when there was one.
   */
  constructor({ status, code, message, retryAfter, body, cause }) {
    super(message || code || `HTTP ${status}`, cause ? { cause } : undefined);
    this.name = 'RelayError';
    this.status = status;
    this.code = code;
    this.retryAfter = retryAfter;
    this.body = body;
  }
}

const IDEMPOTENT = new Set(['GET', 'HEAD', 'PUT', 'DELETE', 'OPTIONS']);
const LOOKUPS = ['conversationId', 'mailId', 'issueId', 'issueKey'];

/**
 * Retry-After as milliseconds: delta-seconds or an HTTP date; undefined when
 * absent or unreadable.
 * @param {string|null} value
 * @param {number} now milliseconds since the epoch
 */
export function parseRetryAfter(value, now = Date.now()) {
  if (value == null) return undefined;
  const v = String(value).trim();
  if (/^\d+$/.test(v)) return Number(v) * 1000;
  const t = Date.parse(v);
  if (Number.isNaN(t)) return undefined;
  return Math.max(0, t - now);
}

const seg = (s) => encodeURIComponent(String(s));

/** A client of one jira-relay instance (tenant), used by the add-in. */
export class RelayClient {
  #baseUrl;
  #instanceId;
  #clientKey;
  #fetch;
  #sleep;
  #random;
  #now;
  #config; // the last configuration document received
  #configETag;

  /**
   * @param {object} o
   * @param {string} o.baseUrl The relay, e.g. "https://relay.example.com".
   * @param {string} o.instanceId From registration.
   * @param {string} o.clientKey From registration (or the admin key).
   * @param {number} [o.maxRetries=4] Retries of a 429 or 503 answer (0 to switch off).
   * @param {number} [o.retryBaseMs=1000] First backoff when no Retry-After is given; doubles.
   * @param {number} [o.maxRetryDelayMs=30000] A longer wait is not made: the RelayError
   *   (with retryAfter) is thrown instead, for the add-in to tell its user.
   * @param {(info: {attempt: number, delayMs: number, status: number, code?: string}) => void} [o.onRetry]
   * @param {typeof fetch} [o.fetch] For tests; default globalThis.fetch.
   * @param {(ms: number) => Promise<void>} [o.sleep] For tests.
   * @param {() => number} [o.random] For tests; default Math.random.
   */
  constructor({
    baseUrl, instanceId, clientKey,
    maxRetries = 4, retryBaseMs = 1000, maxRetryDelayMs = 30000, onRetry,
    fetch: fetchImpl, sleep, random, now,
  } = {}) {
    if (!baseUrl || !instanceId || !clientKey) {
      throw new TypeError('RelayClient needs baseUrl, instanceId and clientKey');
    }
    this.#baseUrl = String(baseUrl).replace(/\/+$/, '');
    this.#instanceId = String(instanceId);
    this.#clientKey = String(clientKey);
    this.maxRetries = maxRetries;
    this.retryBaseMs = retryBaseMs;
    this.maxRetryDelayMs = maxRetryDelayMs;
    this.onRetry = onRetry;
    this.#fetch = fetchImpl || globalThis.fetch.bind(globalThis);
    this.#sleep = sleep || ((ms) => new Promise((r) => setTimeout(r, ms)));
    this.#random = random || Math.random;
    this.#now = now || Date.now;
  }

  get instanceId() { return this.#instanceId; }
  get baseUrl() { return this.#baseUrl; }
  /** The ETag of the last configuration document received, or undefined. */
  get configETag() { return this.#configETag; }

  /**
   * Registers a Jira site (Cloud, Server or Data Center) with the relay. The
   * keys are shown this once. deploymentType and cloudId are sent only when
   * given; the relay checks them (RelayError 400 invalid_field, 409
   * cloud_id_taken, 409 conflict for a URL registered already).
   * @param {object} o
   * @param {string} o.baseUrl The relay.
   * @param {string} o.url The Jira's URL, e.g. "https://acme.atlassian.net", or a Server or
   *   Data Center base URL such as "https://jira.corp.example.com/jira".
   * @param {'Cloud'|'Server'|'DataCenter'} [o.deploymentType] As Jira's serverInfo spells it;
   *   the relay takes "Cloud" when it is left out. For "Server" and "DataCenter" the relay keeps
   *   the data but carries no attachments (409 attachments_direct).
   * @param {string} [o.cloudId] A Cloud site's cloud id (a UUID); Cloud only.
   * @param {string} o.jiraVersion
   * @param {string} o.addinVersion
   * @param {{key: string, expiresAt: string, seats: number}} [o.license]
   * @param {string} [o.registrationToken] When the relay runs with --registration-token.
   * @returns {Promise<{instanceId: string, clientKey: string, adminKey: string,
   *   instance: {id: string, url: string, deploymentType: string, cloudId?: string}}>}
   */
  static async register({ baseUrl, url, deploymentType, cloudId, jiraVersion, addinVersion, license, registrationToken, ...opts }) {
    const headers = { 'Content-Type': 'application/json' };
    if (registrationToken) headers['X-Registration-Token'] = registrationToken;
    const body = JSON.stringify({
      url,
      ...(deploymentType != null ? { deploymentType } : {}),
      ...(cloudId != null ? { cloudId } : {}),
      jiraVersion, addinVersion,
      ...(license ? { license } : {}),
    });
    const bootstrap = new RelayClient({ baseUrl, instanceId: '-', clientKey: '-', ...opts });
    const res = await bootstrap.#send('POST', '/v1/instances', { headers, body, keyless: true });
    return bootstrap.#json(res, [201]);
  }

  /**
   * The admin's configuration document. The last one received is kept with its
   * ETag, sent back in If-None-Match: while it is unchanged the relay answers
   * 304 and the kept document is returned (the same object).
   * @returns {Promise<object>}
   */
  async getConfig() {
    const headers = {};
    if (this.#configETag && this.#config !== undefined) headers['If-None-Match'] = this.#configETag;
    const res = await this.#send('GET', this.#path('/config'), { headers });
    if (res.status === 304 && this.#config !== undefined) {
      await drain(res);
      return this.#config;
    }
    const doc = await this.#json(res, [200]);
    this.#config = doc;
    this.#configETag = res.headers.get('ETag') || undefined;
    return doc;
  }

  /**
   * Creates or replaces a user.
   * @returns {Promise<{user: object, created: boolean}>}
   */
  async putUser(userId, { name, email }) {
    const res = await this.#send('PUT', this.#path(`/users/${seg(userId)}`), this.#jsonBody({ name, email }));
    const user = await this.#json(res, [200, 201]);
    return { user, created: res.status === 201 };
  }

  /** One user. */
  async getUser(userId) {
    return this.#json(await this.#send('GET', this.#path(`/users/${seg(userId)}`)), [200]);
  }

  /**
   * Links a mail of a user with a Jira issue.
   * @param {{conversationId?: string, mailId: string, userId: string, app?: string,
   *          jira: {id: string, key: string, projectId?: string}}} mapping
   * @returns {Promise<{mapping: object, created: boolean}>}
   */
  async linkMapping(mapping) {
    const res = await this.#send('POST', this.#path('/mappings'), this.#jsonBody(mapping));
    const stored = await this.#json(res, [200, 201]);
    return { mapping: stored, created: res.status === 201 };
  }

  /**
   * One page of mappings, by exactly one of conversationId, mailId, issueId and
   * issueKey; optionally of one user.
   * @param {{conversationId?: string, mailId?: string, issueId?: string, issueKey?: string,
   *          userId?: string, limit?: number, cursor?: string}} q
   * @returns {Promise<{mappings: object[], next: string}>}
   */
  async findMappings(q = {}) {
    const given = LOOKUPS.filter((k) => q[k] !== undefined && q[k] !== null && q[k] !== '');
    if (given.length !== 1) {
      throw new TypeError(`findMappings needs exactly one of ${LOOKUPS.join(', ')}`);
    }
    const query = { [given[0]]: q[given[0]] };
    for (const k of ['userId', 'limit', 'cursor']) {
      if (q[k] !== undefined && q[k] !== null && q[k] !== '') query[k] = q[k];
    }
    return this.#json(await this.#send('GET', this.#path('/mappings'), { query }), [200]);
  }

  /** Every mapping of a lookup, page after page (an async iterator). */
  async *iterateMappings(q = {}) {
    let cursor;
    do {
      const page = await this.findMappings({ ...q, cursor });
      yield* page.mappings;
      cursor = page.next;
    } while (cursor);
  }

  /**
   * Unlinks a mail from an issue (for every user, or only userId).
   * @returns {Promise<{deleted: number}>}
   */
  async unlink({ mailId, issueId, userId }) {
    const query = { mailId, issueId };
    if (userId !== undefined) query.userId = userId;
    return this.#json(await this.#send('DELETE', this.#path('/mappings'), { query }), [200]);
  }

  /**
   * Streams an attachment to a Jira issue through the relay. base64 is the
   * string Office.js gives (getAttachmentContentAsync, format "base64"): it is
   * sent as it is, with ?encoding=base64, and the relay decodes it while
   * streaming; it is never decoded here.
   * @param {object} o
   * @param {string} o.issueIdOrKey "ABC-123" or the numeric id.
   * @param {string} o.base64 The file as base64 (line breaks allowed).
   * @param {string} o.filename
   * @param {string} [o.contentType] The file's type; default application/octet-stream.
   * @param {string} o.jiraAuthorization The user's Jira credential ("Bearer …" or "Basic …"),
   *   passed to Jira unchanged.
   * @param {AbortSignal} [o.signal]
   * @returns {Promise<object[]>} Jira's answer: the attachments created.
   * @throws {RelayError} status 409, code "attachments_direct": the instance is Jira Server or
   *   Data Center, whose attachments the relay does not carry: send the attachment to Jira
   *   Server/Data Center yourself. Not retried.
   */
  async uploadAttachment({ issueIdOrKey, base64, filename, contentType, jiraAuthorization, signal }) {
    if (typeof base64 !== 'string') throw new TypeError('uploadAttachment: base64 must be the base64 string');
    if (!filename) throw new TypeError('uploadAttachment: filename is required');
    if (!jiraAuthorization) throw new TypeError('uploadAttachment: jiraAuthorization is required');
    const res = await this.#send('POST', this.#path(`/issues/${seg(issueIdOrKey)}/attachments`), {
      query: { encoding: 'base64', filename },
      headers: { 'Content-Type': contentType || 'application/octet-stream', Authorization: jiraAuthorization },
      body: base64,
      signal,
    });
    return this.#json(res, [200]);
  }

  /**
   * Streams an attachment's bytes from Jira. Resolves to the fetch Response
   * (200, or 206 for a range): read it with .blob(), .arrayBuffer() or .body.
   * @param {{attachmentId: string, jiraAuthorization: string, range?: string, signal?: AbortSignal}} o
   * @returns {Promise<Response>}
   * @throws {RelayError} status 409, code "attachments_direct": the instance is Jira Server or
   *   Data Center: fetch the attachment from Jira Server/Data Center yourself. Not retried.
   */
  async downloadAttachment({ attachmentId, jiraAuthorization, range, signal }) {
    if (!jiraAuthorization) throw new TypeError('downloadAttachment: jiraAuthorization is required');
    const headers = { Authorization: jiraAuthorization };
    if (range) headers.Range = range;
    const res = await this.#send('GET', this.#path(`/attachments/${seg(attachmentId)}/content`), { headers, signal });
    if (res.status === 200 || res.status === 206) return res;
    throw await toError(res);
  }

  /**
   * Sends an error report of the add-in (only stored when the instance's admin
   * turned error reports on; else RelayError 403 error_reports_off).
   * @returns {Promise<{id: string}>}
   */
  async reportError({ message, stack, addinVersion, context }) {
    return this.#json(await this.#send('POST', this.#path('/error-reports'),
      this.#jsonBody({ message, stack, addinVersion, context })), [201]);
  }

  #path(rest) { return `/v1/instances/${seg(this.#instanceId)}${rest}`; }

  #jsonBody(v) {
    // JSON.stringify drops undefined fields: the relay refuses unknown ones and
    // nulls where strings go.
    return { headers: { 'Content-Type': 'application/json' }, body: JSON.stringify(v) };
  }

  async #json(res, ok) {
    if (!ok.includes(res.status)) throw await toError(res);
    try {
      return await res.json();
    } catch (e) {
      throw new RelayError({ status: res.status, code: 'invalid_answer', message: 'the relay answered no JSON', cause: e });
    }
  }

  /**
   * Sends a request with the retries described above, and resolves to the
   * final Response (whatever its status) or rejects with a network RelayError.
   */
  async #send(method, path, { query, headers = {}, body, signal, keyless = false } = {}) {
    let url = this.#baseUrl + path;
    if (query) {
      const qs = new URLSearchParams();
      for (const [k, v] of Object.entries(query)) if (v !== undefined) qs.append(k, String(v));
      const s = qs.toString(); // "+" becomes %2B, "/" %2F, " " "+"
      if (s) url += `?${s}`;
    }
    const h = { ...headers };
    if (!keyless) h['X-Relay-Key'] = this.#clientKey;
    const init = {
      method, headers: h, body, signal,
      // No HTTP cache in between: the ETag logic is the client's own, and a
      // browser cache would turn the relay's 304 into a 200.
      cache: 'no-store', credentials: 'omit', mode: 'cors', redirect: 'error',
    };
    for (let attempt = 0; ; attempt++) {
      let res;
      try {
        res = await this.#fetch(url, init);
      } catch (e) {
        if (e?.name === 'AbortError' || signal?.aborted) {
          throw new RelayError({ status: 0, code: 'aborted', message: 'the request was aborted', cause: e });
        }
        const err = new RelayError({ status: 0, code: 'network_error', message: `no answer from the relay: ${e?.message || e}`, cause: e });
        if (!IDEMPOTENT.has(method) || attempt >= this.maxRetries) throw err;
        const delayMs = this.#backoff(attempt);
        if (delayMs > this.maxRetryDelayMs) throw err;
        this.onRetry?.({ attempt: attempt + 1, delayMs, status: 0, code: 'network_error' });
        await this.#sleep(delayMs);
        continue;
      }
      if ((res.status === 429 || res.status === 503) && attempt < this.maxRetries) {
        const ra = parseRetryAfter(res.headers.get('Retry-After'), this.#now());
        const delayMs = Math.round((ra ?? this.#backoffBase(attempt)) * this.#jitter());
        if (delayMs <= this.maxRetryDelayMs) {
          this.onRetry?.({ attempt: attempt + 1, delayMs, status: res.status });
          await drain(res);
          await this.#sleep(delayMs);
          continue;
        }
      }
      return res;
    }
  }

  #jitter() { return 0.7 + 0.6 * this.#random(); }
  #backoffBase(attempt) { return this.retryBaseMs * 2 ** attempt; }
  #backoff(attempt) { return Math.round(this.#backoffBase(attempt) * this.#jitter()); }
}

/** Reads and drops a body, so the connection can be reused. */
async function drain(res) {
  try { await res.arrayBuffer(); } catch { /* gone already */ }
}

/** The RelayError for a failed answer. */
async function toError(res) {
  let text = '';
  try { text = await res.text(); } catch { /* no body */ }
  let body;
  try { body = text ? JSON.parse(text) : undefined; } catch { /* not JSON */ }
  const ra = parseRetryAfter(res.headers.get('Retry-After'));
  const retryAfter = ra === undefined ? undefined : Math.ceil(ra / 1000);
  if (body?.error && typeof body.error.code === 'string') {
    return new RelayError({ status: res.status, code: body.error.code, message: body.error.message, retryAfter, body });
  }
  if (body && (Array.isArray(body.errorMessages) || (body.errors && typeof body.errors === 'object'))) {
    const msgs = [...(body.errorMessages || []), ...Object.values(body.errors || {})];
    return new RelayError({ status: res.status, code: 'jira_error', message: msgs.join('; ') || `Jira answered ${res.status}`, retryAfter, body });
  }
  return new RelayError({ status: res.status, code: `http_${res.status}`, message: text.slice(0, 200) || `HTTP ${res.status}`, retryAfter, body });
}
